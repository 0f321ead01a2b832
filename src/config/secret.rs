//! Where a secret comes from: `env:NAME`, `file:PATH`, `cred:NAME` or a literal, resolved at load.

use std::path::Path;

use crate::secret::Secret;

/// How a secret was written, for `check`'s warning about literals.
#[derive(Debug, PartialEq, Eq)]
pub enum SecretOrigin {
    Environment,
    File,
    Credential,
    Literal,
}

/// Resolves one secret reference. `base` is the config file's folder, for relative `file:` paths.
pub fn resolve(
    text: &str,
    base: &Path,
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Secret, SecretOrigin), String> {
    if let Some(name) = text.strip_prefix("env:") {
        return match lookup_env(name) {
            Some(value) if !value.is_empty() => Ok((Secret::new(value), SecretOrigin::Environment)),
            Some(_) => Err(format!(
                "environment variable `{name}` is empty; set it to the secret before starting hookrunner"
            )),
            None => Err(format!(
                "environment variable `{name}` is not set; export it, or use `file:PATH` or `cred:NAME`"
            )),
        };
    }
    if let Some(path) = text.strip_prefix("file:") {
        let path = base.join(path);
        return read_secret_file(&path).map(|secret| (secret, SecretOrigin::File));
    }
    if let Some(name) = text.strip_prefix("cred:") {
        let Some(directory) = lookup_env("CREDENTIALS_DIRECTORY") else {
            return Err(format!(
                "`cred:{name}` needs systemd's `$CREDENTIALS_DIRECTORY`, which is not set; add `LoadCredential={name}:...` to the unit, or use `file:PATH`"
            ));
        };
        let path = Path::new(&directory).join(name);
        return read_secret_file(&path).map(|secret| (secret, SecretOrigin::Credential));
    }
    if text.is_empty() {
        return Err("the secret is empty; use `env:NAME`, `file:PATH` or `cred:NAME`".into());
    }
    Ok((Secret::new(text), SecretOrigin::Literal))
}

fn read_secret_file(path: &Path) -> Result<Secret, String> {
    let mut bytes = std::fs::read(path)
        .map_err(|error| format!("cannot read secret file `{}`: {error}", path.display()))?;
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    if bytes.is_empty() {
        return Err(format!("secret file `{}` is empty", path.display()));
    }
    Ok(Secret::new(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SET" => Some("s3cret".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn resolves_each_origin() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "from-file\n").unwrap();
        let cases: &[(&str, Result<(&str, SecretOrigin), &str>)] = &[
            ("env:SET", Ok(("s3cret", SecretOrigin::Environment))),
            ("env:UNSET", Err("is not set")),
            ("env:EMPTY", Err("is empty")),
            ("file:token", Ok(("from-file", SecretOrigin::File))),
            ("file:missing", Err("cannot read secret file")),
            ("cred:x", Err("CREDENTIALS_DIRECTORY")),
            ("plain", Ok(("plain", SecretOrigin::Literal))),
            ("", Err("the secret is empty")),
        ];
        for (text, expected) in cases {
            let got = resolve(text, dir.path(), &env);
            match (got, expected) {
                (Ok((secret, origin)), Ok((value, want))) => {
                    assert_eq!(secret.expose(), value.as_bytes(), "{text}");
                    assert_eq!(&origin, want, "{text}");
                }
                (Err(message), Err(fragment)) => {
                    assert!(message.contains(fragment), "{text}: {message}")
                }
                (got, _) => panic!("{text}: unexpected {:?}", got.map(|(_, o)| o)),
            }
        }
    }
}
