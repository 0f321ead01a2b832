//! Secret values: bytes whose `Debug` never shows them, alone or as a list for key rotation.
//! A leaf: where a secret comes from (`env:`, `file:`, `cred:`, literal) is the config's business.

use std::fmt;

/// A secret's bytes. `Debug` prints a placeholder so a secret cannot reach a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Secret(bytes.into())
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// One or more secrets: any one of them that verifies passes (key rotation).
#[derive(Clone, Debug)]
pub struct Secrets(pub Vec<Secret>);

impl Secrets {
    pub fn iter(&self) -> impl Iterator<Item = &Secret> {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_value() {
        assert_eq!(
            format!("{:?}", Secret::new("hunter2")),
            "Secret(<redacted>)"
        );
        assert_eq!(
            format!("{:?}", Secrets(vec![Secret::new("hunter2")])),
            "Secrets([Secret(<redacted>)])"
        );
    }
}
