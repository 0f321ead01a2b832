//! One request as plain data: headers, query, raw body, and the values references read from it.
//! The body is parsed (JSON, form, multipart or XML) only when a reference needs it, and at most once. An empty
//! body is no payload: every `payload` reference is missing, as on a request without one.

use std::net::IpAddr;
use std::sync::OnceLock;

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::reference::{render_value, select, PathSegment, Reference};

/// Request headers with lowercase names, in arrival order.
#[derive(Clone, Debug, Default)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    pub fn new(pairs: impl IntoIterator<Item = (String, String)>) -> Headers {
        Headers(
            pairs
                .into_iter()
                .map(|(name, value)| (name.to_ascii_lowercase(), value))
                .collect(),
        )
    }

    /// The first value of a header, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Every header as a JSON object: lowercase names in arrival order, several values of one
    /// name joined by `, ` (as `header.<Name>` gives them).
    pub fn as_json(&self) -> Value {
        let mut object = Map::new();
        for (name, _) in &self.0 {
            if !object.contains_key(name) {
                let joined = self.joined(name).unwrap_or_default();
                object.insert(name.clone(), Value::String(joined));
            }
        }
        Value::Object(object)
    }

    /// Every value of a header joined by `, `, if present.
    pub fn joined(&self, name: &str) -> Option<String> {
        let values: Vec<&str> = self
            .0
            .iter()
            .filter(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
            .collect();
        (!values.is_empty()).then(|| values.join(", "))
    }
}

/// Where a provider puts its event name or delivery id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdSource {
    Header(&'static str),
    /// A top-level field of the parsed payload; of the body read as JSON when the request calls it a
    /// form, since the content type is not signed.
    Payload(&'static str),
}

/// A value a reference needed could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("the body could not be parsed: {0}")]
    BodyUnparsable(String),
    /// The request has a client address, but it cannot be told: a unix-socket client that no
    /// trusted proxy speaks for, or a forwarded hop that is not an address. A template takes it
    /// as missing; a rule fails closed.
    #[error("the client address is unknown")]
    AddressUnknown,
}

/// Everything the rules and templates may read about one request.
#[derive(Debug, Default)]
pub struct RequestContext {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Headers,
    pub body: Bytes,
    /// `None` when the address is unknown (see [`ValueError::AddressUnknown`]).
    pub remote_ip: Option<IpAddr>,
    /// The client's port when the connection is the client's own; `None` when a trusted proxy
    /// named the client (its port is not forwarded) or the address is unknown.
    pub remote_port: Option<u16>,
    pub request_id: String,
    pub hook_id: String,
    pub job_id: String,
    pub event_sources: &'static [IdSource],
    pub delivery_sources: &'static [IdSource],
    /// The hook's `body_type`, as a content type: the body is parsed as this, whatever the
    /// request's own `Content-Type` says.
    pub body_type: Option<&'static str>,
    pub(crate) payload: OnceLock<Result<Option<Value>, ValueError>>,
}

impl RequestContext {
    pub fn new() -> RequestContext {
        RequestContext::default()
    }

    /// The parsed body: form data, multipart or XML when the content type says so, JSON otherwise;
    /// `None` when the
    /// body is empty (or blank).
    pub fn payload(&self) -> Result<Option<&Value>, ValueError> {
        self.payload
            .get_or_init(|| {
                let content_type = self.body_type.or(self.headers.get("content-type"));
                parse_body(content_type, &self.body)
            })
            .as_ref()
            .map(Option::as_ref)
            .map_err(Clone::clone)
    }

    /// Whether the body was read as form data, as its content type says, but looks like JSON (its
    /// first non-space byte is `{` or `[`): what `curl -d` sends without
    /// `-H 'Content-Type: application/json'`.
    pub fn form_looks_like_json(&self) -> bool {
        media_type(self.body_type.or(self.headers.get("content-type"))) == FORM
            && self
                .body
                .iter()
                .find(|byte| !byte.is_ascii_whitespace())
                .is_some_and(|byte| matches!(byte, b'{' | b'['))
    }

    /// Every value a reference names, rendered as text. Empty when the value is missing; an error
    /// when the body it needs does not parse or the client address is unknown.
    pub fn values(&self, reference: &Reference) -> Result<Vec<String>, ValueError> {
        let single = |value: Option<String>| Ok(value.into_iter().collect());
        match reference {
            Reference::Payload(path) => {
                let mut found = Vec::new();
                if let Some(payload) = self.payload()? {
                    select(payload, path, &mut found);
                }
                Ok(found.iter().map(render_value).collect())
            }
            Reference::Body => single(Some(String::from_utf8_lossy(&self.body).into_owned())),
            Reference::Header(name) => Ok(dotted_value(name, |name| self.headers.joined(name))),
            Reference::Query(name) => Ok(dotted_value(name, |name| {
                self.query
                    .iter()
                    .find(|(key, _)| key == name)
                    .map(|(_, value)| value.clone())
            })),
            Reference::Headers => single(Some(self.headers.as_json().to_string())),
            Reference::AllQuery => {
                single(Some(fields_object(self.query.iter().cloned()).to_string()))
            }
            Reference::RequestMethod => single(Some(self.method.clone())),
            Reference::RequestPath => single(Some(self.path.clone())),
            Reference::RemoteIp => match self.remote_ip {
                Some(ip) => single(Some(ip.to_string())),
                None => Err(ValueError::AddressUnknown),
            },
            // adnanh/webhook's `remote-addr`; behind a trusted proxy the port is `0`.
            Reference::RemoteAddr => match self.remote_ip {
                Some(ip) => single(Some(
                    std::net::SocketAddr::new(ip, self.remote_port.unwrap_or(0)).to_string(),
                )),
                None => Err(ValueError::AddressUnknown),
            },
            Reference::RequestId => single(Some(self.request_id.clone())),
            Reference::HookId => single(Some(self.hook_id.clone())),
            Reference::JobId => single(Some(self.job_id.clone())),
            Reference::Event => single(self.event()),
            Reference::Delivery => single(self.delivery()),
        }
    }

    /// The provider's event name, when the provider and the request say it.
    pub fn event(&self) -> Option<String> {
        self.first_id(self.event_sources)
    }

    /// The provider's delivery id, when the provider and the request say it.
    pub fn delivery(&self) -> Option<String> {
        self.first_id(self.delivery_sources)
    }

    fn first_id(&self, sources: &[IdSource]) -> Option<String> {
        sources.iter().find_map(|source| {
            let value = match source {
                IdSource::Header(name) => self.headers.get(name).map(str::to_string),
                IdSource::Payload(field) => {
                    let field_of = |payload: &Value| payload.get(*field).map(render_value);
                    // Providers send JSON, and the content type is not signed: a replay that calls
                    // the body a form must not lose the delivery id that makes it a duplicate.
                    if media_type(self.headers.get("content-type")) == FORM {
                        serde_json::from_slice::<Value>(&self.body)
                            .ok()
                            .as_ref()
                            .and_then(field_of)
                    } else {
                        self.payload().ok().flatten().and_then(field_of)
                    }
                }
            };
            value.filter(|value| !value.is_empty())
        })
    }
}

/// The header or query value called `name`. When there is none and `name` has dots, the value
/// called by its first part, with the rest a path into the JSON that value holds, as a payload
/// path reaches into a JSON string: adnanh/webhook's `parse-parameters-as-json`, which also looks
/// the whole dotted name up first.
fn dotted_value(name: &str, lookup: impl Fn(&str) -> Option<String>) -> Vec<String> {
    if let Some(value) = lookup(name) {
        return vec![value];
    }
    let Some((first, rest)) = name.split_once('.') else {
        return Vec::new();
    };
    let Some(value) = lookup(first) else {
        return Vec::new();
    };
    let path: Vec<PathSegment> = rest
        .split('.')
        .map(|key| PathSegment::Key(key.to_string()))
        .collect();
    let mut found = Vec::new();
    select(&Value::String(value), &path, &mut found);
    found.iter().map(render_value).collect()
}

const FORM: &str = "application/x-www-form-urlencoded";

/// Told to a sender whose body [looks like JSON but was read as form
/// data](RequestContext::form_looks_like_json).
pub const FORM_LOOKS_LIKE_JSON: &str = "the body was read as form data but looks like JSON; send it with `Content-Type: application/json`";

/// The media type of a `Content-Type` value, lower-cased, without its parameters.
fn media_type(content_type: Option<&str>) -> String {
    content_type
        .and_then(|value| value.split(';').next())
        .map(|value| value.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

fn parse_body(content_type: Option<&str>, body: &Bytes) -> Result<Option<Value>, ValueError> {
    // A sender with nothing to say sends no body, whatever its content type says.
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let media_type = media_type(content_type);
    if media_type == FORM {
        return Ok(Some(parse_form(body)));
    }
    if media_type == "application/xml" || media_type == "text/xml" {
        return crate::body::xml::parse(body)
            .map(Some)
            .map_err(ValueError::BodyUnparsable);
    }
    if media_type == "multipart/form-data" {
        return crate::body::multipart::parse(content_type.unwrap_or_default(), body)
            .map(Some)
            .map_err(ValueError::BodyUnparsable);
    }
    // JSON is the default: many senders omit the content type or send `text/plain`.
    serde_json::from_slice(body).map(Some).map_err(|error| {
        let kind = if media_type.is_empty() {
            "no content type".to_string()
        } else {
            format!("content type `{media_type}`")
        };
        ValueError::BodyUnparsable(format!(
            "the body ({kind}) is not valid JSON: {error}; send JSON, `application/x-www-form-urlencoded`, `multipart/form-data` or XML"
        ))
    })
}

/// Form data as an object (see [`fields_object`]).
fn parse_form(body: &[u8]) -> Value {
    fields_object(
        form_urlencoded::parse(body).map(|(key, value)| (key.into_owned(), value.into_owned())),
    )
}

/// Named fields (a form body, a query string) as an object: a name given once maps to a string,
/// a repeated name to an array of its strings in order.
fn fields_object(fields: impl Iterator<Item = (String, String)>) -> Value {
    let mut map = Map::new();
    for (key, value) in fields {
        let value = Value::String(value);
        match map.get_mut(&key) {
            None => {
                map.insert(key, value);
            }
            Some(Value::Array(items)) => items.push(value),
            Some(existing) => *existing = Value::Array(vec![existing.take(), value]),
        }
    }
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(content_type: &str, body: &str) -> RequestContext {
        RequestContext {
            headers: Headers::new([
                ("Content-Type".to_string(), content_type.to_string()),
                ("X-Multi".to_string(), "a".to_string()),
                ("x-multi".to_string(), "b".to_string()),
                ("X-GitHub-Event".to_string(), "push".to_string()),
            ]),
            body: Bytes::from(body.to_string()),
            query: vec![("token".into(), "abc".into())],
            event_sources: &[IdSource::Header("X-GitHub-Event")],
            delivery_sources: &[IdSource::Payload("id")],
            ..RequestContext::default()
        }
    }

    fn check(request: &RequestContext, reference: &str, expected: Result<&[&str], &str>) {
        let got = request.values(&Reference::parse(reference).unwrap());
        match (got, expected) {
            (Ok(values), Ok(want)) => assert_eq!(values, want, "{reference}"),
            (Err(error), Err(fragment)) => {
                assert!(error.to_string().contains(fragment), "{reference}: {error}")
            }
            (got, _) => panic!("{reference}: unexpected {got:?}"),
        }
    }

    #[test]
    fn reads_values_from_array_xml_and_multipart_bodies() {
        let array = context(
            "application/json",
            r#"[{"event": "push"}, {"event": "tag"}]"#,
        );
        check(&array, "payload.0.event", Ok(&["push"]));
        check(&array, "payload.1.event", Ok(&["tag"]));

        let xml = context(
            "text/xml; charset=utf-8",
            r#"<app id="7"><message lang="en">hi</message><tag>a</tag><tag>b</tag></app>"#,
        );
        check(&xml, "payload.app.-id", Ok(&["7"]));
        check(&xml, "payload.app.message[\"#text\"]", Ok(&["hi"]));
        check(&xml, "payload.app.message.-lang", Ok(&["en"]));
        check(&xml, "payload.app.tag.1", Ok(&["b"]));
        let broken = context("application/xml", "<app>");
        check(
            &broken,
            "payload.app",
            Err("the body could not be parsed: the body is not well-formed XML"),
        );

        let multipart = context(
            "multipart/form-data; boundary=b",
            "--b\r\nContent-Disposition: form-data; name=\"event\"\r\n\r\npush\r\n--b\r\nContent-Disposition: form-data; name=\"data\"; filename=\"d.json\"\r\nContent-Type: application/json\r\n\r\n{\"ref\": \"main\"}\r\n--b--\r\n",
        );
        check(&multipart, "payload.event", Ok(&["push"]));
        check(&multipart, "payload.data.ref", Ok(&["main"]));
    }

    #[test]
    fn reads_values_from_json_and_form_bodies() {
        let json = context(
            "application/json; charset=utf-8",
            r#"{"id": "evt_1", "a": {"b": [1, 2]}}"#,
        );
        check(&json, "payload.a.b.1", Ok(&["2"]));
        check(&json, "payload", Ok(&[r#"{"id":"evt_1","a":{"b":[1,2]}}"#]));
        check(&json, "header.x-multi", Ok(&["a, b"]));
        check(&json, "header.X-Missing", Ok(&[]));
        check(&json, "query.token", Ok(&["abc"]));
        check(
            &json,
            "headers",
            Ok(&[
                r#"{"content-type":"application/json; charset=utf-8","x-multi":"a, b","x-github-event":"push"}"#,
            ]),
        );
        check(&json, "query", Ok(&[r#"{"token":"abc"}"#]));
        let repeated = RequestContext {
            query: vec![
                ("a".into(), "1".into()),
                ("b".into(), "2".into()),
                ("a".into(), "3".into()),
            ],
            ..RequestContext::default()
        };
        check(&repeated, "query", Ok(&[r#"{"a":["1","3"],"b":"2"}"#]));
        check(&RequestContext::default(), "headers", Ok(&["{}"]));
        check(&json, "event", Ok(&["push"]));
        check(&json, "delivery", Ok(&["evt_1"]));

        let form = context(
            "application/x-www-form-urlencoded",
            "payload=%7B%22ref%22%3A%22refs%2Fheads%2Fmain%22%7D&tag=a&tag=b",
        );
        check(&form, "payload.payload.ref", Ok(&["refs/heads/main"]));
        check(&form, "payload.tag.1", Ok(&["b"]));

        let broken = context("application/json", "{not json");
        check(&broken, "payload.a", Err("is not valid JSON"));
        check(&broken, "body", Ok(&["{not json"]));
        check(&broken, "delivery", Ok(&[]));

        for blank in ["", " \r\n\t"] {
            for content_type in ["", "application/json", "application/x-www-form-urlencoded"] {
                let empty = context(content_type, blank);
                assert_eq!(empty.payload(), Ok(None), "{content_type} {blank:?}");
                check(&empty, "payload.a", Ok(&[]));
                check(&empty, "payload", Ok(&[]));
                check(&empty, "delivery", Ok(&[]));
                check(&empty, "body", Ok(&[blank]));
            }
        }
    }

    #[test]
    fn header_and_query_references_reach_into_the_json_they_hold() {
        let request = RequestContext {
            headers: Headers::new([
                (
                    "X-Data".to_string(),
                    r#"{"Kind": "build", "list": [1, {"a": true}]}"#.to_string(),
                ),
                ("X-Plain".to_string(), "not json".to_string()),
                ("X-Dotted.Name".to_string(), "as named".to_string()),
                (
                    "X-Dotted".to_string(),
                    r#"{"Name": "from JSON"}"#.to_string(),
                ),
            ]),
            query: vec![
                ("data".into(), r#"{"key": "v", "n": 1.50}"#.into()),
                ("a.b".into(), "as named".into()),
                ("a".into(), r#"{"b": "from JSON"}"#.into()),
            ],
            ..RequestContext::default()
        };
        let cases: &[(&str, &[&str])] = &[
            ("header.X-Data.Kind", &["build"]),
            ("header.x-data.list.1.a", &["true"]),
            ("header.X-Data.list", &["[1,{\"a\":true}]"]),
            ("header.X-Data.kind", &[]),
            ("header.X-Data.missing", &[]),
            ("header.X-Plain.key", &[]),
            ("header.X-None.key", &[]),
            ("header.X-Dotted.Name", &["as named"]),
            ("query.data.key", &["v"]),
            ("query.data.n", &["1.50"]),
            ("query.data.missing", &[]),
            ("query.a.b", &["as named"]),
            ("query.none.key", &[]),
        ];
        for (reference, expected) in cases {
            check(&request, reference, Ok(expected));
        }
    }

    #[test]
    fn json_sent_as_form_data_is_told_apart() {
        let form = "application/x-www-form-urlencoded; charset=utf-8";
        let cases = [
            (form, "{\"a\": 1}", true),
            (form, " \n [1]", true),
            (form, "a=1&b={", false),
            (form, "", false),
            ("application/json", "{\"a\": 1}", false),
            ("", "{\"a\": 1}", false),
        ];
        for (content_type, body, expected) in cases {
            assert_eq!(
                context(content_type, body).form_looks_like_json(),
                expected,
                "{content_type} {body:?}"
            );
        }
    }

    #[test]
    fn an_unknown_client_address_is_an_error_not_a_missing_value() {
        let mut request = context("", "");
        check(&request, "request.remote_ip", Err("address is unknown"));
        request.remote_ip = Some("192.0.2.1".parse().unwrap());
        check(&request, "request.remote_ip", Ok(&["192.0.2.1"]));
        check(&request, "request.remote_addr", Ok(&["192.0.2.1:0"]));
        request.remote_port = Some(41234);
        check(&request, "request.remote_addr", Ok(&["192.0.2.1:41234"]));
        request.remote_ip = Some("::1".parse().unwrap());
        check(&request, "request.remote_addr", Ok(&["[::1]:41234"]));
    }
}
