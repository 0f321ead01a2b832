//! `Reference::parse` and `Template::parse` over arbitrary text, and `render` of every successful
//! template over an arbitrary body.
//!
//! Input: the text, then a NUL byte, then the body (JSON, or form data when the text starts with
//! `form:` — that prefix is part of the text too). Without a NUL the body is a fixed JSON document.
//!
//! Properties besides "never panics":
//! - a parsed reference prints (`Display`) as text that parses back to the same reference;
//! - text without `{{` or `}}` is a template that renders to itself.
#![no_main]

use bytes::Bytes;
use hookrunner::reference::Reference;
use hookrunner::request::{Headers, IdSource, RequestContext};
use hookrunner::template::Template;
use libfuzzer_sys::fuzz_target;

const DEFAULT_BODY: &[u8] = br#"{"ref":"refs/heads/main","after":"abc","a.b":{"c":[1,"two",null,true,{"d":1.50}]},"payload":"{\"x\":[\"y\"]}","":"empty key"}"#;

fn context(form: bool, body: &[u8]) -> RequestContext {
    let content_type = if form {
        "application/x-www-form-urlencoded"
    } else {
        "application/json"
    };
    // Built field by field: its cached payload is private to the crate.
    let mut request = RequestContext::new();
    request.method = "POST".into();
    request.path = "/hooks/deploy".into();
    request.query = vec![("token".into(), "abc".into()), ("a".into(), "1".into())];
    request.headers = Headers::new([
        ("Content-Type".to_string(), content_type.to_string()),
        ("X-GitHub-Event".to_string(), "push".to_string()),
        ("X-Multi".to_string(), "a".to_string()),
        ("X-Multi".to_string(), "b".to_string()),
    ]);
    request.body = Bytes::copy_from_slice(body);
    request.remote_ip = Some("10.1.2.3".parse().expect("an address"));
    request.request_id = "req-1".into();
    request.hook_id = "deploy".into();
    request.job_id = "job-1".into();
    request.event_sources = &[IdSource::Header("X-GitHub-Event")];
    request.delivery_sources = &[IdSource::Payload("id")];
    request
}

fuzz_target!(|data: &[u8]| {
    let (text, body) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, DEFAULT_BODY),
    };
    let text = String::from_utf8_lossy(text);
    let request = context(text.starts_with("form:"), body);

    if let Ok(reference) = Reference::parse(&text) {
        let printed = reference.to_string();
        match Reference::parse(&printed) {
            Ok(again) if again == reference => {}
            other => {
                panic!("reference {reference:?} prints as {printed:?}, which parses as {other:?}")
            }
        }
        let _ = reference.is_multi_valued();
        let _ = request.values(&reference);
    }

    match Template::parse(&text) {
        Ok(template) => {
            let _ = template.references().count();
            match template.render(&request) {
                Ok(rendered) => {
                    if !text.contains("{{") && !text.contains("}}") {
                        assert_eq!(
                            rendered, text,
                            "a template without `{{{{ }}}}` renders as written"
                        );
                    }
                }
                Err(error) => {
                    let _ = error.to_string();
                }
            }
        }
        Err(message) => {
            let _ = message;
        }
    }
});
