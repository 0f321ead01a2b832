//! Templates: text with `{{ reference }}` and `{{ reference | "fallback" }}` parts, parsed once at load
//! and rendered per request. Used in `run.command` elements, `run.env` values and `dedupe_key`.

use std::sync::Arc;

use crate::by_text::{ByText, FromText};
use crate::reference::Reference;
use crate::request::{RequestContext, ValueError};

/// A parsed template. Cloning one shares its parts: a config whose hooks write the same template
/// holds it once (see [`Templates`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    parts: Arc<[Part]>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Value {
        reference: Reference,
        fallback: Option<String>,
    },
}

/// Why a template could not be rendered for a request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("the request has no value for `{0}`")]
    Missing(String),
    #[error(transparent)]
    Value(#[from] ValueError),
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| format!("`{{{{` at `{}` has no closing `}}}}`", &rest[start..]))?;
            parts.push(parse_value(after[..end].trim())?);
            rest = &after[end + 2..];
        }
        if rest.contains("}}") {
            return Err("`}}` without an opening `{{`".into());
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        // `into` copies the parts into an allocation of their exact size.
        Ok(Template {
            parts: parts.into(),
        })
    }

    pub fn references(&self) -> impl Iterator<Item = &Reference> {
        self.parts.iter().filter_map(|part| match part {
            Part::Value { reference, .. } => Some(reference),
            Part::Text(_) => None,
        })
    }

    pub fn render(&self, request: &RequestContext) -> Result<String, RenderError> {
        let mut out = String::new();
        for part in self.parts.iter() {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Value {
                    reference,
                    fallback,
                } => {
                    let values = match request.values(reference) {
                        // A value the request cannot tell is missing here: the fallback applies.
                        Err(ValueError::AddressUnknown) => Vec::new(),
                        values => values?,
                    };
                    match (values.into_iter().next(), fallback) {
                        (Some(value), _) => out.push_str(&value),
                        (None, Some(fallback)) => out.push_str(fallback),
                        (None, None) => return Err(RenderError::Missing(reference.to_string())),
                    }
                }
            }
        }
        Ok(out)
    }
}

/// The templates parsed while a config loads, by their text: a template written the same way in
/// many hooks (`{{ payload.after }}` in ten thousand of them) is parsed and held once.
pub type Templates = ByText<Template>;

impl FromText for Template {
    fn from_text(text: &str) -> Result<Template, String> {
        Template::parse(text)
    }
}

fn parse_value(inner: &str) -> Result<Part, String> {
    let (reference_text, fallback) = match inner.split_once('|') {
        None => (inner, None),
        Some((reference, fallback)) => {
            let fallback = fallback.trim();
            let parsed: String = serde_json::from_str(fallback).map_err(|_| {
                format!("the fallback `{fallback}` must be a double-quoted string, as in `{{{{ {} | \"default\" }}}}`", reference.trim())
            })?;
            (reference.trim(), Some(parsed))
        }
    };
    if reference_text.is_empty() {
        return Err("empty `{{ }}`; name a value, such as `{{ payload.after }}`".into());
    }
    let reference = Reference::parse(reference_text)?;
    if reference.is_multi_valued() {
        return Err(format!(
            "`{reference}` has a `*` segment, which can name many values; templates need one value (use `*` in `when`)"
        ));
    }
    Ok(Part::Value {
        reference,
        fallback,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Headers;

    fn request() -> RequestContext {
        RequestContext {
            headers: Headers::new([("content-type".to_string(), "application/json".to_string())]),
            body: r#"{"after": "abc123", "pusher": {"name": "octo"}, "n": 0}"#.into(),
            hook_id: "deploy".into(),
            ..RequestContext::default()
        }
    }

    #[test]
    fn renders_templates() {
        let cases: &[(&str, Result<&str, RenderError>)] = &[
            ("plain text", Ok("plain text")),
            ("{{ payload.after }}", Ok("abc123")),
            ("{{payload.pusher.name}}@{{ hook.id }}", Ok("octo@deploy")),
            ("n={{ payload.n }}", Ok("n=0")),
            ("{{ payload.missing | \"none\" }}", Ok("none")),
            ("{{ payload.after | \"none\" }}", Ok("abc123")),
            (
                "{{ payload.missing }}",
                Err(RenderError::Missing("payload.missing".into())),
            ),
            (
                "{{ header.X-None }}",
                Err(RenderError::Missing("header.x-none".into())),
            ),
            // The request has no known client address.
            ("{{ request.remote_ip | \"unknown\" }}", Ok("unknown")),
            (
                "{{ request.remote_ip }}",
                Err(RenderError::Missing("request.remote_ip".into())),
            ),
        ];
        for (text, expected) in cases {
            let template = Template::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let got = template.render(&request());
            assert_eq!(
                got.as_deref().map_err(Clone::clone),
                expected.clone(),
                "{text}"
            );
        }
    }

    #[test]
    fn the_same_text_is_parsed_once_and_shared() {
        let mut templates = Templates::default();
        let first = templates.get("{{ payload.after }}").unwrap();
        let again = templates.get("{{ payload.after }}").unwrap();
        let other = templates.get("{{ payload.before }}").unwrap();
        assert!(Arc::ptr_eq(&first.parts, &again.parts));
        assert!(!Arc::ptr_eq(&first.parts, &other.parts));
        assert_eq!(first.render(&request()).unwrap(), "abc123");
        // A template that does not parse is refused every time, not remembered.
        assert!(templates.get("{{ payload.after").is_err());
        assert!(templates.get("{{ payload.after").is_err());
    }

    #[test]
    fn rejects_bad_templates() {
        let cases = [
            ("{{ payload.after", "no closing"),
            ("a }} b", "without an opening"),
            ("{{ }}", "empty"),
            ("{{ payload.a | none }}", "double-quoted"),
            ("{{ nonsense }}", "unknown reference"),
            ("{{ payload.commits.*.id }}", "`*` segment"),
        ];
        for (text, fragment) in cases {
            let error = Template::parse(text).expect_err(text);
            assert!(error.contains(fragment), "{text}: {error}");
        }
    }
}
