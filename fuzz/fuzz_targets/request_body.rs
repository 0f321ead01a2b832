//! Arbitrary body bytes and content type through `RequestContext::payload()` and `values()`.
//!
//! Input: the first byte picks the content type from a list (JSON, form data in several spellings,
//! text, none...), the rest is the body.
//!
//! Properties besides "never panics":
//! - a blank body is no payload (`None`), whatever the content type;
//! - form data always parses, to an object of strings and arrays of strings;
//! - otherwise the payload is JSON exactly when `serde_json` reads the body;
//! - `payload()` gives the same answer every time (it is parsed once);
//! - `payload` is one value (none without a payload), `payload.*` one per element or member,
//!   `body` the body as text;
//! - a payload reference fails exactly when the payload does not parse.
#![no_main]

use bytes::Bytes;
use hookrunner::reference::Reference;
use hookrunner::request::{Headers, IdSource, RequestContext};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const CONTENT_TYPES: [Option<&str>; 10] = [
    Some("application/json"),
    Some("application/x-www-form-urlencoded"),
    None,
    Some("application/json; charset=utf-8"),
    Some("Application/X-WWW-Form-Urlencoded ; charset=UTF-8"),
    Some("text/plain"),
    Some(""),
    Some("multipart/form-data; boundary=x"),
    Some("application/x-www-form-urlencoded2"),
    Some(" application/x-www-form-urlencoded;"),
];

const REFERENCES: [&str; 14] = [
    "payload",
    "payload.*",
    "payload.*.*",
    "payload.a",
    "payload.a.b.0",
    "payload.0",
    "payload.0.*.1",
    "payload[\"a.b\"]",
    "payload.payload.ref",
    "payload.commits.*.modified.*",
    "body",
    "event",
    "delivery",
    "header.content-type",
];

fn is_form(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| {
            media
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

fuzz_target!(|data: &[u8]| {
    let Some((selector, body)) = data.split_first() else {
        return;
    };
    let content_type = CONTENT_TYPES[usize::from(*selector) % CONTENT_TYPES.len()];
    // Built field by field: its cached payload is private to the crate.
    let mut request = RequestContext::new();
    request.headers =
        Headers::new(content_type.map(|value| ("Content-Type".to_string(), value.to_string())));
    request.body = Bytes::copy_from_slice(body);
    request.event_sources = &[IdSource::Payload("type"), IdSource::Payload("event")];
    request.delivery_sources = &[IdSource::Payload("id")];

    let payload = request.payload();
    assert_eq!(
        payload.clone().map(|value| value.map(Value::to_string)),
        request.payload().map(|value| value.map(Value::to_string)),
        "payload() changed between two calls"
    );
    let blank = body.iter().all(u8::is_ascii_whitespace);
    if blank {
        assert_eq!(payload, Ok(None), "a blank body is no payload");
    } else if is_form(content_type) {
        let Ok(Some(Value::Object(map))) = &payload else {
            panic!("form data did not parse to an object: {payload:?}");
        };
        for value in map.values() {
            match value {
                Value::String(_) => {}
                Value::Array(items) if items.iter().all(Value::is_string) => {}
                other => panic!("form value {other:?} is not text or a list of text"),
            }
        }
    } else {
        let direct = serde_json::from_slice::<Value>(body).ok();
        match (&direct, &payload) {
            (Some(direct), Ok(Some(parsed))) => {
                assert_eq!(direct, *parsed, "the payload differs from the JSON")
            }
            (None, Err(_)) => {}
            (direct, payload) => {
                panic!("serde_json read {direct:?} but payload() gave {payload:?}")
            }
        }
    }

    for text in REFERENCES {
        let reference = Reference::parse(text).expect("the fixed references parse");
        let values = request.values(&reference);
        match (&reference, &values, &payload) {
            (Reference::Payload(_), Err(_), Err(_)) => {}
            (Reference::Payload(_), Err(error), Ok(_)) => {
                panic!("`{text}` failed ({error}) though the payload parsed")
            }
            (Reference::Payload(_), Ok(_), Err(error)) => {
                panic!("`{text}` gave values though the payload did not parse ({error})")
            }
            _ => {}
        }
        let Ok(values) = values else { continue };
        match text {
            "payload" => assert_eq!(
                values.len(),
                usize::from(!blank),
                "`payload` is one value, or none without a payload"
            ),
            "payload.*" => {
                let expected = match &payload {
                    Ok(Some(Value::Array(items))) => Some(items.len()),
                    Ok(Some(Value::Object(map))) => Some(map.len()),
                    _ => None, // scalars have none; a string holding JSON is parsed first
                };
                if let Some(expected) = expected {
                    assert_eq!(values.len(), expected, "`payload.*` is one value per child");
                }
            }
            "body" => assert_eq!(
                values,
                [String::from_utf8_lossy(body).into_owned()],
                "`body` is the body as text"
            ),
            _ => {}
        }
    }
    let _ = (request.event(), request.delivery());
});
