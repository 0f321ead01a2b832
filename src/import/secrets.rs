//! Where a converted hook's secrets go (`import-webhook --secrets env|inline|files DIR`): an
//! `env:` reference named after the hook (the default), the literal the source file held, or a
//! file of their own. This stays pure: files to write are listed for the caller to write.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::source::Report;

/// How `--secrets` asks for secrets to be written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretMode {
    /// `env:HOOK_WEBHOOK_SECRET`, and a note saying which value to set it to.
    Env,
    /// The secret itself, as the source file had it: the converted file passes `check` at once.
    Inline,
    /// Each secret in its own file under this (absolute) folder, referenced as `file:`.
    Files(PathBuf),
}

/// A secret the caller writes to a file, mode 0600, before the config is used.
#[derive(Debug, PartialEq, Eq)]
pub struct SecretFile {
    pub path: PathBuf,
    pub secret: String,
}

/// The secrets of one conversion: the names handed out so far, so two hooks never share an
/// environment variable or a file by accident, and the files to write.
#[derive(Debug)]
pub struct Secrets {
    mode: SecretMode,
    names: HashSet<String>,
    pub files: Vec<SecretFile>,
}

impl Default for Secrets {
    fn default() -> Self {
        Secrets::new(SecretMode::Env)
    }
}

/// What the source file said about one secret.
pub struct SourceSecret<'a> {
    pub hook_id: &'a str,
    pub secret: &'a str,
    /// Where it is in the source file, as `trigger-rule.and[0].match.secret`.
    pub at: &'a str,
    /// `SECRET` for an HMAC key, `TOKEN` for a token sent as it is.
    pub kind: &'static str,
}

impl Secrets {
    pub fn new(mode: SecretMode) -> Secrets {
        Secrets {
            mode,
            names: HashSet::new(),
            files: Vec::new(),
        }
    }

    /// The text of the converted `secret:` key for `source`; what the user must do is noted in
    /// `report`, and a secret that cannot be written this way is an error there.
    pub fn reference(&mut self, source: &SourceSecret, report: &mut Report) -> String {
        let word = if source.kind == "TOKEN" {
            "token"
        } else {
            "secret"
        };
        match self.mode.clone() {
            SecretMode::Env => {
                let name = self.claim(env_name(source.hook_id, source.kind));
                report.note(format!(
                    "set `{name}` to the {word} at `{}` in the original file before starting hookrunner",
                    source.at
                ));
                format!("env:{name}")
            }
            SecretMode::Inline => {
                if let Some(prefix) = ["env:", "file:", "cred:"]
                    .into_iter()
                    .find(|prefix| source.secret.starts_with(prefix))
                {
                    report.error(format!(
                        "`{}`: the {word} starts with `{prefix}`, which hookrunner reads as a reference, so it cannot be written inline; use `--secrets env` or `--secrets files DIR`",
                        source.at
                    ));
                }
                source.secret.to_string()
            }
            SecretMode::Files(directory) => {
                if source.secret.ends_with(['\n', '\r']) {
                    report.error(format!(
                        "`{}`: the {word} ends with a line break, which hookrunner strips from secret files; use `--secrets env` or `--secrets inline`",
                        source.at
                    ));
                }
                let name = self.claim(file_name(source.hook_id));
                let path = directory.join(&name);
                report.note(format!(
                    "the {word} at `{}` in the original file is written to `{}`",
                    source.at,
                    path.display()
                ));
                let reference = format!("file:{}", path.display());
                self.files.push(SecretFile {
                    path,
                    secret: source.secret.to_string(),
                });
                reference
            }
        }
    }

    /// True for a `file:` reference this conversion will write: the file is not there yet when
    /// the converted hook is checked.
    pub fn will_write(&self, reference: &str) -> bool {
        reference
            .strip_prefix("file:")
            .is_some_and(|path| self.files.iter().any(|file| file.path == Path::new(path)))
    }

    /// `base`, or `base_2`, `base_3`, ... if it is taken.
    fn claim(&mut self, base: String) -> String {
        let mut name = base.clone();
        let mut counter = 2;
        while !self.names.insert(name.clone()) {
            name = format!("{base}_{counter}");
            counter += 1;
        }
        name
    }
}

/// `DEPLOY_WEBHOOK_SECRET` for hook `deploy`; `REDEPLOY_WEBHOOK_SECRET`, not
/// `REDEPLOY_WEBHOOK_WEBHOOK_SECRET`, for `redeploy-webhook`.
fn env_name(hook_id: &str, kind: &str) -> String {
    let mut stem: String = hook_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    if stem.starts_with(|c: char| c.is_ascii_digit()) {
        stem.insert_str(0, "HOOK_");
    }
    let stem = stem.trim_end_matches("_WEBHOOK");
    if stem == "WEBHOOK" || stem.is_empty() {
        return format!("WEBHOOK_{kind}");
    }
    format!("{stem}_WEBHOOK_{kind}")
}

/// The hook's id as one file name: `sendgrid/dir` becomes `sendgrid_dir`.
fn file_name(hook_id: &str) -> String {
    let name: String = hook_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    match name.trim_start_matches('.') {
        "" => "hook".to_string(),
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_names_are_short_and_not_doubled() {
        let cases = [
            ("deploy", "SECRET", "DEPLOY_WEBHOOK_SECRET"),
            ("redeploy-webhook", "SECRET", "REDEPLOY_WEBHOOK_SECRET"),
            ("redeploy_webhook", "TOKEN", "REDEPLOY_WEBHOOK_TOKEN"),
            ("webhook", "SECRET", "WEBHOOK_SECRET"),
            (
                "my-webhook-runner",
                "SECRET",
                "MY_WEBHOOK_RUNNER_WEBHOOK_SECRET",
            ),
            ("sendgrid/dir", "SECRET", "SENDGRID_DIR_WEBHOOK_SECRET"),
            ("1st", "TOKEN", "HOOK_1ST_WEBHOOK_TOKEN"),
        ];
        for (id, kind, want) in cases {
            assert_eq!(env_name(id, kind), want, "{id}");
        }
    }

    #[test]
    fn file_names_stay_in_the_folder() {
        let cases = [
            ("deploy", "deploy"),
            ("sendgrid/dir", "sendgrid_dir"),
            ("..", "hook"),
            ("../x", ".._x"),
            ("a b", "a_b"),
        ];
        for (id, want) in cases {
            assert_eq!(file_name(id), want, "{id}");
        }
    }

    fn source<'a>(hook_id: &'a str, secret: &'a str) -> SourceSecret<'a> {
        SourceSecret {
            hook_id,
            secret,
            at: "trigger-rule.match.secret",
            kind: "SECRET",
        }
    }

    #[test]
    fn each_mode_writes_its_reference() {
        let mut report = Report::default();
        let mut env = Secrets::new(SecretMode::Env);
        assert_eq!(
            env.reference(&source("a", "s"), &mut report),
            "env:A_WEBHOOK_SECRET"
        );
        assert_eq!(
            env.reference(&source("a", "t"), &mut report),
            "env:A_WEBHOOK_SECRET_2"
        );

        let mut inline = Secrets::new(SecretMode::Inline);
        assert_eq!(
            inline.reference(&source("a", "s3cr3t"), &mut report),
            "s3cr3t"
        );

        let mut files = Secrets::new(SecretMode::Files(PathBuf::from("/etc/h")));
        assert_eq!(
            files.reference(&source("a/b", "one"), &mut report),
            "file:/etc/h/a_b"
        );
        assert_eq!(
            files.reference(&source("a/b", "two"), &mut report),
            "file:/etc/h/a_b_2"
        );
        assert_eq!(
            files.files,
            [
                SecretFile {
                    path: "/etc/h/a_b".into(),
                    secret: "one".into()
                },
                SecretFile {
                    path: "/etc/h/a_b_2".into(),
                    secret: "two".into()
                },
            ]
        );
        assert!(files.will_write("file:/etc/h/a_b_2"));
        assert!(!files.will_write("file:/etc/h/other"));
        assert!(report.errors.is_empty(), "{:?}", report.errors);
    }

    #[test]
    fn a_secret_that_cannot_be_written_so_is_an_error() {
        let mut report = Report::default();
        Secrets::new(SecretMode::Inline).reference(&source("a", "env:HOME"), &mut report);
        Secrets::new(SecretMode::Files("/d".into())).reference(&source("a", "s\n"), &mut report);
        assert_eq!(report.errors.len(), 2, "{:?}", report.errors);
        assert!(report.errors[0].contains("`env:`"), "{:?}", report.errors);
        assert!(
            report.errors[1].contains("line break"),
            "{:?}",
            report.errors
        );
    }
}
