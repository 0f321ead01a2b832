//! Reading an adnanh/webhook hook: typed access to its JSON values with the path of each key for
//! messages, the per-hook list of problems, and request-value references (`{"source": ..., "name":
//! ...}`) turned into hookrunner references.

use std::fmt;

use serde_json::{Map, Value};

use crate::config::decode::did_you_mean;
use crate::reference::Reference;

/// What the converter has to say about one hook besides its errors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// The converted hook behaves differently from the original in a way the user should know.
    Warning(String),
    /// Something the user has to do, such as setting an environment variable.
    Note(String),
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Notice::Warning(message) => write!(f, "warning: {message}"),
            Notice::Note(message) => write!(f, "note: {message}"),
        }
    }
}

/// The errors and notices gathered while converting one hook.
#[derive(Debug, Default)]
pub struct Report {
    pub errors: Vec<String>,
    pub notices: Vec<Notice>,
    /// Whether any value is read from the query string, a hint that the sender may use `GET`.
    pub reads_query: bool,
}

impl Report {
    pub fn error(&mut self, message: impl Into<String>) {
        self.errors.push(message.into());
    }

    pub fn warn(&mut self, message: impl Into<String>) {
        self.notices.push(Notice::Warning(message.into()));
    }

    pub fn note(&mut self, message: impl Into<String>) {
        self.notices.push(Notice::Note(message.into()));
    }
}

/// One value of the source file and where it is, as `trigger-rule.and[0].match`; the hook's own
/// keys have no prefix, so messages read `` `response-message` ``.
pub struct Located<'a> {
    pub value: &'a Value,
    pub path: String,
}

impl<'a> Located<'a> {
    pub fn root(value: &'a Value) -> Located<'a> {
        Located {
            value,
            path: String::new(),
        }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn key(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The child under `key` of an object node, if present.
    pub fn child(&self, key: &str) -> Option<Located<'a>> {
        let value = self.value.as_object()?.get(key)?;
        Some(Located {
            value,
            path: self.key(key),
        })
    }

    /// The elements of an array node; anything else is an error naming `what` it should hold.
    pub fn items(&self, report: &mut Report, what: &str) -> Option<Vec<Located<'a>>> {
        let Value::Array(items) = self.value else {
            report.error(format!("`{}` must be a list of {what}", self.path));
            return None;
        };
        Some(
            items
                .iter()
                .enumerate()
                .map(|(index, value)| Located {
                    value,
                    path: format!("{}[{index}]", self.path),
                })
                .collect(),
        )
    }

    /// The node as an object whose keys are all in `known`; each other key is an error.
    pub fn object(
        &self,
        report: &mut Report,
        what: &str,
        known: &[&str],
    ) -> Option<&'a Map<String, Value>> {
        let Value::Object(map) = self.value else {
            report.error(if self.path.is_empty() {
                format!("{what} must be an object of keys and values")
            } else {
                format!("`{}` must be {what}", self.path)
            });
            return None;
        };
        for key in map.keys().filter(|key| !known.contains(&key.as_str())) {
            let hint = did_you_mean(key, known)
                .map(|suggestion| format!(", did you mean `{suggestion}`?"))
                .unwrap_or_default();
            report.error(format!(
                "`{}` is not a key adnanh/webhook reads in {what}{hint}",
                self.key(key)
            ));
        }
        Some(map)
    }

    /// A string; numbers and booleans are taken as written, as adnanh asks users to quote them.
    pub fn text(&self, report: &mut Report) -> Option<String> {
        match self.value {
            Value::String(text) => Some(text.clone()),
            Value::Number(number) => Some(number.to_string()),
            Value::Bool(flag) => Some(flag.to_string()),
            _ => {
                report.error(format!("`{}` must be a string", self.path));
                None
            }
        }
    }

    pub fn bool(&self, report: &mut Report) -> Option<bool> {
        match self.value {
            Value::Bool(flag) => Some(*flag),
            Value::String(text) if text == "true" || text == "false" => Some(text == "true"),
            _ => {
                report.error(format!("`{}` must be `true` or `false`", self.path));
                None
            }
        }
    }

    /// An HTTP status code; adnanh's `0` means "not set".
    pub fn status(&self, report: &mut Report) -> Option<Option<u16>> {
        let number = match self.value {
            Value::Number(number) => number.as_u64(),
            Value::String(text) => text.trim().parse().ok(),
            _ => None,
        };
        match number {
            Some(0) => Some(None),
            Some(code @ 200..=599) => Some(Some(code as u16)),
            _ => {
                report.error(format!(
                    "`{}` must be an HTTP status from 200 to 599, as hookrunner accepts",
                    self.path
                ));
                None
            }
        }
    }
}

/// A request value: a fixed string or a hookrunner reference such as `payload.head_commit.id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Literal(String),
    Reference(String),
}

impl Source {
    /// The value as a hookrunner template, or an error if a literal would be read as one.
    pub fn template(&self, at: &str, report: &mut Report) -> Option<String> {
        match self {
            Source::Reference(reference) => Some(format!("{{{{ {reference} }}}}")),
            Source::Literal(text) => literal_template(text, at, report),
        }
    }
}

/// A fixed text for a template field; hookrunner has no escape for `{{` and `}}`.
pub fn literal_template(text: &str, at: &str, report: &mut Report) -> Option<String> {
    if text.contains("{{") || text.contains("}}") {
        report.error(format!(
            "`{at}` contains `{{{{` or `}}}}`, which hookrunner would read as a template and cannot escape (if this file is a Go template for `webhook -template`, render it first)"
        ));
        return None;
    }
    Some(text.to_string())
}

/// The keys an adnanh request-value reference may have.
pub const ARGUMENT_KEYS: &[&str] = &[
    "source",
    "name",
    "envname",
    "base64decode",
    "headers-to-add-to-signature-payload",
];

/// Converts `{"source": ..., "name": ...}` to a hookrunner value; errors name the key at fault.
pub fn source(argument: &Located<'_>, report: &mut Report) -> Option<Source> {
    let map = argument.object(report, "a request value", ARGUMENT_KEYS)?;
    let Some(source) = argument.child("source") else {
        report.error(format!(
            "`{}` has no `source`; adnanh needs one of `header`, `url`, `payload`, `request`, `string`, ...",
            argument.path()
        ));
        return None;
    };
    let source = source.text(report)?;
    let name_at = argument.key("name");
    let name = match map.get("name") {
        None => None,
        Some(_) => Some(argument.child("name")?.text(report)?),
    };
    let needs_name = |report: &mut Report| -> Option<String> {
        match &name {
            Some(name) if !name.is_empty() => Some(name.clone()),
            _ => {
                report.error(format!(
                    "`{}` with `source: {source}` needs a `name`",
                    argument.path()
                ));
                None
            }
        }
    };
    let reference = match source.as_str() {
        "string" => return Some(Source::Literal(name.unwrap_or_default())),
        "payload" => payload_reference(&needs_name(report)?, &name_at, report)?,
        "header" => {
            let name = needs_name(report)?;
            token_reference("header", &name, &name_at, report)?
        }
        "url" | "query" => {
            report.reads_query = true;
            let name = needs_name(report)?;
            token_reference("query", &name, &name_at, report)?
        }
        "request" => {
            let name = needs_name(report)?;
            match name.to_ascii_lowercase().as_str() {
                "method" => "request.method".to_string(),
                "remote-addr" => "request.remote_addr".to_string(),
                _ => {
                    report.error(format!(
                        "`{name_at}`: adnanh's `request` source has `method` and `remote-addr`, not `{name}`"
                    ));
                    return None;
                }
            }
        }
        "raw-request-body" => "body".to_string(),
        "entire-payload" => "payload".to_string(),
        "entire-headers" => "headers".to_string(),
        "entire-query" => {
            report.reads_query = true;
            "query".to_string()
        }
        "template" => {
            report.error(format!(
                "`{}`: `source: template` has no hookrunner equivalent: hookrunner does not run Go templates; reference the values one by one",
                argument.path()
            ));
            return None;
        }
        other => {
            report.error(format!(
                "`{}`: unknown `source: {other}`; adnanh reads `header`, `url`, `query`, `payload`, `request`, `string`, `raw-request-body`, `entire-payload`, `entire-headers` and `entire-query`",
                argument.path()
            ));
            return None;
        }
    };
    // The text built above must be a reference hookrunner parses; anything else is a bug here.
    match Reference::parse(&reference) {
        Ok(_) => Some(Source::Reference(reference)),
        Err(message) => {
            report.error(format!("`{name_at}`: {message}"));
            None
        }
    }
}

/// `header.NAME` or `query.NAME`; hookrunner takes names made of letters, digits, `-`, `_` and `.`.
fn token_reference(kind: &str, name: &str, at: &str, report: &mut Report) -> Option<String> {
    let valid = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !valid {
        report.error(format!(
            "`{at}`: hookrunner cannot reference the {kind} `{name}`: its name may only use letters, digits, `-`, `_` and `.`"
        ));
        return None;
    }
    Some(format!("{kind}.{name}"))
}

/// adnanh's dotted payload name as a hookrunner path: `commits.0.id` is `payload.commits.0.id`, and
/// a segment hookrunner cannot write bare (a space, a `/`, an empty key) is quoted, `["a b"]`.
///
/// adnanh also looks a dotted name up as one literal key first; hookrunner reads the path only, as
/// payloads with dots inside keys are rare (write `payload["a.b"]` by hand for one).
pub fn payload_reference(name: &str, at: &str, report: &mut Report) -> Option<String> {
    // XML bodies read the same in both: `-name` is an attribute, `#text` an element's text.
    let mut segments: Vec<&str> = name.split('.').collect();
    // adnanh wraps a JSON array payload in an object under `root`; hookrunner reads the array itself.
    if segments.len() > 1 && segments[0] == "root" && segments[1].parse::<usize>().is_ok() {
        report.warn(format!(
            "`{at}`: `{name}` is read as `payload.{}`: adnanh put a JSON array payload under `root`, hookrunner indexes the array directly",
            segments[1..].join(".")
        ));
        segments.remove(0);
    }
    let mut reference = String::from("payload");
    for segment in segments {
        let plain = !segment.is_empty()
            && segment != "*"
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_$@".contains(&b));
        if plain {
            reference.push('.');
            reference.push_str(segment);
        } else {
            reference.push('[');
            reference.push_str(&Value::String(segment.to_string()).to_string());
            reference.push(']');
        }
    }
    Some(reference)
}

/// Whether a header, query or payload name suggests its value is a secret (`X-Gitlab-Token`,
/// `X-Api-Key`, `api_key`, `Authorization`, `token`), and not an event name (Bitbucket's
/// `X-Event-Key: repo:push`).
pub fn looks_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    !name.contains("event")
        && ["token", "secret", "key", "auth", "password"]
            .iter()
            .any(|word| name.contains(word))
}
