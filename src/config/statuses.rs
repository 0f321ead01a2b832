//! A list of job statuses in the config (`retry.on`, `notify[].on`): a small set, decoded with a
//! did-you-mean for misspelt statuses and a reason for each status the key does not take.

use std::fmt;

use serde_yaml::Value;

use super::decode::{did_you_mean, Decoder};
use super::source_map::{Part, YamlPath};
use crate::job::Status;

/// A set of job statuses.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusSet(u16);

impl StatusSet {
    pub fn of(statuses: &[Status]) -> StatusSet {
        statuses
            .iter()
            .fold(StatusSet::default(), |set, status| set.with(*status))
    }

    pub fn with(self, status: Status) -> StatusSet {
        StatusSet(self.0 | bit(status))
    }

    pub fn contains(self, status: Status) -> bool {
        self.0 & bit(status) != 0
    }

    pub fn iter(self) -> impl Iterator<Item = Status> {
        Status::ALL
            .into_iter()
            .filter(move |status| self.contains(*status))
    }
}

fn bit(status: Status) -> u16 {
    let index = Status::ALL
        .iter()
        .position(|candidate| *candidate == status)
        .unwrap_or_default();
    1 << index
}

impl fmt::Debug for StatusSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.iter().map(Status::as_str))
            .finish()
    }
}

/// What a status key takes: `key` names it in messages (`retry.on`), `allowed` are the statuses
/// it takes, and `refusal` says why a known status that is not allowed is refused.
pub struct StatusKey<'a> {
    pub key: &'a str,
    pub allowed: &'a [Status],
    pub refusal: &'a dyn Fn(Status) -> &'static str,
}

impl StatusKey<'_> {
    fn allowed_list(&self) -> String {
        let names: Vec<String> = self
            .allowed
            .iter()
            .map(|status| format!("`{}`", status.as_str()))
            .collect();
        match names.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
            None => String::new(),
        }
    }

    /// Decodes a list of statuses (one status alone is a list of one). Every bad entry is
    /// reported; `None` when any was.
    pub fn decode(
        &self,
        decoder: &mut Decoder<'_>,
        value: &Value,
        path: &YamlPath,
    ) -> Option<StatusSet> {
        let key = self.key;
        let names = decoder.string_list(value, path)?;
        if names.is_empty() {
            decoder.error(
                path,
                Part::Value,
                format!(
                    "`{key}` is empty; list the statuses it takes: {}",
                    self.allowed_list()
                ),
            );
            return None;
        }
        let known: Vec<&str> = Status::ALL.iter().map(|status| status.as_str()).collect();
        let mut set = Some(StatusSet::default());
        for (index, name) in names.iter().enumerate() {
            let at = if matches!(value, Value::Sequence(_)) {
                path.index(index)
            } else {
                path.clone()
            };
            let message = match Status::parse(name) {
                Some(status) if self.allowed.contains(&status) => {
                    set = set.map(|set| set.with(status));
                    continue;
                }
                Some(status) => format!(
                    "`{name}` {}; `{key}` takes {}",
                    (self.refusal)(status),
                    self.allowed_list()
                ),
                None => match did_you_mean(name, &known) {
                    Some(suggestion) => {
                        format!("`{name}` is not a job status, did you mean `{suggestion}`?")
                    }
                    None => format!(
                        "`{name}` is not a job status; `{key}` takes {}",
                        self.allowed_list()
                    ),
                },
            };
            decoder.error(&at, Part::Value, message);
            set = None;
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_holds_what_was_put_in_it() {
        let set = StatusSet::of(&[Status::Failed, Status::Interrupted]);
        let cases = [
            (Status::Failed, true),
            (Status::Interrupted, true),
            (Status::Succeeded, false),
            (Status::Queued, false),
            (Status::TimedOut, false),
        ];
        for (status, expected) in cases {
            assert_eq!(set.contains(status), expected, "{status:?}");
        }
        assert_eq!(format!("{set:?}"), r#"{"failed", "interrupted"}"#);
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            [Status::Failed, Status::Interrupted]
        );
    }
}
