//! References to one value of a request (`payload.a.b`, `header.X-Name`, `request.remote_ip`, ...):
//! their syntax, parsed once at config load, and how a payload path walks a JSON document.

use std::fmt;

use serde_json::Value;

/// A parsed reference. See SPEC §3 for the table of what each one names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    /// `payload` (the whole document) or `payload.<path>`.
    Payload(Vec<PathSegment>),
    /// `body`: the raw body as text.
    Body,
    /// `header.<Name>`, the name stored lowercase. A name with dots may also be a header and a
    /// path into the JSON it holds (`header.X-Data.key`); what follows the first dot keeps its
    /// case, as JSON keys are case-sensitive. See [`RequestContext::values`](crate::request::RequestContext::values).
    Header(String),
    /// `headers`: every header as a JSON object of lowercase names.
    Headers,
    /// `query.<name>`; with dots, maybe a parameter and a path into its JSON, as for `header`.
    Query(String),
    /// `query`: every query-string parameter as a JSON object.
    AllQuery,
    RequestMethod,
    RequestPath,
    RemoteIp,
    /// `IP:port`, adnanh/webhook's `remote-addr`.
    RemoteAddr,
    RequestId,
    HookId,
    JobId,
    Event,
    Delivery,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathSegment {
    /// An object key, or an array index when the segment is numeric and the value is an array.
    Key(String),
    /// `*`: every element of an array or every value of an object.
    Wildcard,
}

impl Reference {
    /// Parses the text of a reference, such as `payload.commits.0.id`.
    pub fn parse(text: &str) -> Result<Reference, String> {
        let text = text.trim();
        let (head, rest) = match text.find(['.', '[']) {
            Some(at) => (&text[..at], &text[at..]),
            None => (text, ""),
        };
        let name_after_dot = |kind: &str| -> Result<String, String> {
            let name = rest.strip_prefix('.').unwrap_or("");
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return Err(format!(
                    "`{text}` needs a {kind} name after `{head}.`, such as `{head}.X-GitHub-Event`"
                ));
            }
            Ok(name.to_string())
        };
        let reference = match head {
            "payload" => Reference::Payload(parse_path(rest).map_err(|e| format!("`{text}`: {e}"))?),
            "body" if rest.is_empty() => Reference::Body,
            "header" => Reference::Header(header_name_lowercase(&name_after_dot("header")?)),
            "headers" if rest.is_empty() => Reference::Headers,
            "query" if rest.is_empty() => Reference::AllQuery,
            "query" => Reference::Query(name_after_dot("query parameter")?),
            "request" => match rest {
                ".method" => Reference::RequestMethod,
                ".path" => Reference::RequestPath,
                ".remote_ip" => Reference::RemoteIp,
                ".remote_addr" => Reference::RemoteAddr,
                ".id" => Reference::RequestId,
                _ => return Err(format!(
                    "unknown reference `{text}`; `request` has `method`, `path`, `remote_ip`, `remote_addr` and `id`"
                )),
            },
            "hook" if rest == ".id" => Reference::HookId,
            "job" if rest == ".id" => Reference::JobId,
            "event" if rest.is_empty() => Reference::Event,
            "delivery" if rest.is_empty() => Reference::Delivery,
            _ => {
                return Err(format!(
                    "unknown reference `{text}`; references start with `payload`, `body`, `header.`, `headers`, `query`, `request.`, `hook.id`, `job.id`, `event` or `delivery`"
                ))
            }
        };
        Ok(reference)
    }

    /// Whether the reference can yield more than one value (it has a `*` segment).
    pub fn is_multi_valued(&self) -> bool {
        matches!(self, Reference::Payload(path) if path.contains(&PathSegment::Wildcard))
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Payload(path) => {
                f.write_str("payload")?;
                for segment in path {
                    match segment {
                        PathSegment::Wildcard => f.write_str(".*")?,
                        PathSegment::Key(key)
                            if !key.is_empty() && key.bytes().all(is_plain_key_byte) =>
                        {
                            write!(f, ".{key}")?
                        }
                        PathSegment::Key(key) => write!(f, "[{}]", Value::String(key.clone()))?,
                    }
                }
                Ok(())
            }
            Reference::Body => f.write_str("body"),
            Reference::Header(name) => write!(f, "header.{name}"),
            Reference::Headers => f.write_str("headers"),
            Reference::Query(name) => write!(f, "query.{name}"),
            Reference::AllQuery => f.write_str("query"),
            Reference::RequestMethod => f.write_str("request.method"),
            Reference::RequestPath => f.write_str("request.path"),
            Reference::RemoteIp => f.write_str("request.remote_ip"),
            Reference::RemoteAddr => f.write_str("request.remote_addr"),
            Reference::RequestId => f.write_str("request.id"),
            Reference::HookId => f.write_str("hook.id"),
            Reference::JobId => f.write_str("job.id"),
            Reference::Event => f.write_str("event"),
            Reference::Delivery => f.write_str("delivery"),
        }
    }
}

/// The header name of a `header.` reference in lowercase, up to its first dot; what follows may
/// be a path into the header's JSON, whose keys keep their case.
fn header_name_lowercase(name: &str) -> String {
    match name.split_once('.') {
        Some((header, path)) => format!("{}.{path}", header.to_ascii_lowercase()),
        None => name.to_ascii_lowercase(),
    }
}

fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-_.".contains(&byte)
}

fn is_plain_key_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-_$@".contains(&byte)
}

/// Parses `.a.b.0["key.with.dots"].*` into segments.
fn parse_path(mut rest: &str) -> Result<Vec<PathSegment>, String> {
    let mut segments = Vec::new();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let (key, after) = parse_quoted(after)?;
            rest = after
                .strip_prefix(']')
                .ok_or("a quoted key must be closed with `\"]`")?;
            segments.push(PathSegment::Key(key));
        } else if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            let key = &after[..end];
            if key.is_empty() {
                return Err("empty path segment; write keys with dots as `[\"a.b\"]`".into());
            }
            if !key.bytes().all(is_plain_key_byte) && key != "*" {
                return Err(format!(
                    "`{key}` has characters that need quoting; write it as `[\"{key}\"]`"
                ));
            }
            segments.push(if key == "*" {
                PathSegment::Wildcard
            } else {
                PathSegment::Key(key.to_string())
            });
            rest = &after[end..];
        } else {
            return Err(format!("unexpected `{rest}`; separate segments with `.`"));
        }
    }
    Ok(segments)
}

/// Reads a JSON-style double-quoted string at the start of `text`; returns it and what follows.
fn parse_quoted(text: &str) -> Result<(String, &str), String> {
    if !text.starts_with('"') {
        return Err("a bracketed key must be quoted, as in `[\"app.kubernetes.io/name\"]`".into());
    }
    let mut escaped = false;
    for (at, c) in text.char_indices().skip(1) {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => {
                let key: String = serde_json::from_str(&text[..=at])
                    .map_err(|_| "the quoted key has an invalid escape".to_string())?;
                return Ok((key, &text[at + 1..]));
            }
            _ => escaped = false,
        }
    }
    Err("the quoted key has no closing `\"`".into())
}

/// Walks `path` through `value`, pushing every value reached. A string that holds a JSON object or
/// array is parsed when the path descends into it (GitHub's form mode sends `payload=<json>`).
pub fn select(value: &Value, path: &[PathSegment], out: &mut Vec<Value>) {
    let Some((first, rest)) = path.split_first() else {
        out.push(value.clone());
        return;
    };
    match (value, first) {
        (Value::Object(map), PathSegment::Key(key)) => {
            if let Some(child) = map.get(key) {
                select(child, rest, out);
            }
        }
        (Value::Object(map), PathSegment::Wildcard) => {
            map.values().for_each(|child| select(child, rest, out))
        }
        (Value::Array(items), PathSegment::Key(key)) => {
            if let Some(child) = key.parse::<usize>().ok().and_then(|i| items.get(i)) {
                select(child, rest, out);
            }
        }
        (Value::Array(items), PathSegment::Wildcard) => {
            items.iter().for_each(|child| select(child, rest, out))
        }
        (Value::String(text), _) => {
            let trimmed = text.trim_start();
            if trimmed.starts_with('{') || trimmed.starts_with('[') {
                if let Ok(parsed) = serde_json::from_str::<Value>(text) {
                    select(&parsed, path, out);
                }
            }
        }
        _ => {}
    }
}

/// Renders a JSON value as text: strings as they are, numbers as written, booleans as
/// `true`/`false`, null as empty, objects and arrays as compact JSON.
pub fn render_value(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => number.to_string(),
        Value::Array(_) | Value::Object(_) => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_and_prints_references() {
        let round_trips = [
            "payload",
            "payload.a.b.0.c",
            "payload.labels[\"app.kubernetes.io/name\"]",
            "payload[\"\"].x",
            "payload.commits.*.modified.*",
            "body",
            "header.x-github-event",
            "header.x-data.Key.0",
            "query.token",
            "query.data.Key",
            "headers",
            "query",
            "request.method",
            "request.path",
            "request.remote_ip",
            "request.remote_addr",
            "request.id",
            "hook.id",
            "job.id",
            "event",
            "delivery",
        ];
        for text in round_trips {
            let reference = Reference::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(reference.to_string(), text);
        }
        assert_eq!(
            Reference::parse("header.X-GitHub-Event").unwrap(),
            Reference::Header("x-github-event".into())
        );
        assert_eq!(
            Reference::parse("header.X-Data.Key.0").unwrap(),
            Reference::Header("x-data.Key.0".into())
        );
        assert_eq!(
            Reference::parse("query.data.Key").unwrap(),
            Reference::Query("data.Key".into())
        );
    }

    #[test]
    fn rejects_bad_references() {
        let cases = [
            ("payloads.x", "unknown reference"),
            ("header", "needs a header name"),
            ("header.", "needs a header name"),
            ("headers.x", "unknown reference"),
            ("request.host", "`request` has"),
            ("payload..a", "empty path segment"),
            ("payload.a b", "need quoting"),
            ("payload[a]", "must be quoted"),
            ("payload[\"a\"", "closed"),
            ("payload[\"a", "no closing"),
            ("body.x", "unknown reference"),
        ];
        for (text, fragment) in cases {
            let error = Reference::parse(text).expect_err(text);
            assert!(error.contains(fragment), "{text}: {error}");
        }
    }

    #[test]
    fn selects_values() {
        let document = json!({
            "ref": "refs/heads/main",
            "n": 1.50,
            "commits": [{"modified": ["a.txt", "b.txt"]}, {"modified": ["c.txt"]}],
            "labels": {"app.kubernetes.io/name": "web"},
            "payload": "{\"ref\": \"refs/heads/dev\"}",
            "nothing": null,
            "flag": true
        });
        let cases: &[(&str, &[&str])] = &[
            ("payload.ref", &["refs/heads/main"]),
            ("payload.commits.1.modified.0", &["c.txt"]),
            ("payload.commits.*.modified.*", &["a.txt", "b.txt", "c.txt"]),
            ("payload.labels[\"app.kubernetes.io/name\"]", &["web"]),
            ("payload.payload.ref", &["refs/heads/dev"]),
            ("payload.nothing", &[""]),
            ("payload.flag", &["true"]),
            (
                "payload.commits.0",
                &["{\"modified\":[\"a.txt\",\"b.txt\"]}"],
            ),
            ("payload.missing", &[]),
            ("payload.commits.9", &[]),
            ("payload.ref.deeper", &[]),
        ];
        for (text, expected) in cases {
            let Reference::Payload(path) = Reference::parse(text).unwrap() else {
                unreachable!()
            };
            let mut out = Vec::new();
            select(&document, &path, &mut out);
            let rendered: Vec<String> = out.iter().map(render_value).collect();
            assert_eq!(rendered, *expected, "{text}");
        }
    }

    #[test]
    fn numbers_render_as_written() {
        let document: Value =
            serde_json::from_str(r#"{"price": 1.50, "big": 12345678901234567890123}"#).unwrap();
        assert_eq!(render_value(&document["price"]), "1.50");
        assert_eq!(render_value(&document["big"]), "12345678901234567890123");
    }
}
