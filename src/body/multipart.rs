//! A `multipart/form-data` body as a JSON object, as adnanh/webhook reads it: each field without
//! a file name is text (a repeated one an array of texts, like a form), a file part sent as
//! `application/json` is its parsed JSON, and other files are left out.
//!
//! The body was already read whole for the signature, so `multer` parses it from memory; its
//! future never waits on anything, and is driven to the end on the calling thread.

use std::convert::Infallible;

use bytes::Bytes;
use serde_json::{Map, Value};

/// How many parts a body may have; a form that needs more is not a webhook.
pub const MAX_PARTS: usize = 1000;

/// Parses `body`, whose `Content-Type` is `content_type` (it carries the boundary).
pub fn parse(content_type: &str, body: &Bytes) -> Result<Value, String> {
    let boundary = multer::parse_boundary(content_type)
        .map_err(|_| "the `multipart/form-data` content type has no `boundary`".to_string())?;
    let body = body.clone();
    let stream = futures_util::stream::once(async move { Ok::<Bytes, Infallible>(body) });
    futures_executor::block_on(read_parts(multer::Multipart::new(stream, boundary)))
}

async fn read_parts(mut multipart: multer::Multipart<'_>) -> Result<Value, String> {
    let unreadable =
        |error: multer::Error| format!("the multipart body could not be read: {error}");
    let mut fields = Map::new();
    let mut parts = 0;
    while let Some(field) = multipart.next_field().await.map_err(unreadable)? {
        parts += 1;
        if parts > MAX_PARTS {
            return Err(format!(
                "the multipart body has more than {MAX_PARTS} parts"
            ));
        }
        let Some(name) = field.name().map(str::to_string) else {
            continue;
        };
        let is_json = field
            .content_type()
            .is_some_and(|mime| mime.essence_str() == "application/json");
        let value = if field.file_name().is_none() {
            Value::String(field.text().await.map_err(unreadable)?)
        } else if is_json {
            let bytes = field.bytes().await.map_err(unreadable)?;
            serde_json::from_slice(&bytes).map_err(|error| {
                format!("the multipart file `{name}` is not valid JSON: {error}")
            })?
        } else {
            continue;
        };
        match fields.get_mut(&name) {
            None => {
                fields.insert(name, value);
            }
            Some(Value::Array(items)) => items.push(value),
            Some(existing) => *existing = Value::Array(vec![existing.take(), value]),
        }
    }
    Ok(Value::Object(fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TYPE: &str = "multipart/form-data; boundary=XyZ";

    fn check(body: &str, expected: Result<&str, &str>) {
        let body = body.replace('\n', "\r\n");
        let got = parse(TYPE, &Bytes::from(body.clone())).map(|value| value.to_string());
        match expected {
            Ok(json) => assert_eq!(got.as_deref(), Ok(json), "{body}"),
            Err(fragment) => {
                let error = got.expect_err(&body);
                assert!(error.contains(fragment), "{body}: {error}");
            }
        }
    }

    #[test]
    fn multipart_reads_as_webhook_read_it() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            (
                "--XyZ\nContent-Disposition: form-data; name=\"event\"\n\npush\n--XyZ\nContent-Disposition: form-data; name=\"tag\"\n\na\n--XyZ\nContent-Disposition: form-data; name=\"tag\"\n\nb\n--XyZ--\n",
                Ok(r#"{"event":"push","tag":["a","b"]}"#),
            ),
            (
                "--XyZ\nContent-Disposition: form-data; name=\"payload\"; filename=\"p.json\"\nContent-Type: application/json\n\n{\"ref\":\"main\"}\n--XyZ\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\nContent-Type: image/png\n\n\u{1}\u{2}\n--XyZ--\n",
                Ok(r#"{"payload":{"ref":"main"}}"#),
            ),
            (
                "--XyZ\nContent-Disposition: form-data; name=\"payload\"; filename=\"p.json\"\nContent-Type: application/json\n\n{not json\n--XyZ--\n",
                Err("the multipart file `payload` is not valid JSON"),
            ),
            ("--XyZ\nContent-Disposition: form-data; name=\"a\"\n\nno end", Err("could not be read")),
            ("", Err("could not be read")),
        ];
        for (body, expected) in cases {
            check(body, *expected);
        }
        assert!(parse("multipart/form-data", &Bytes::new())
            .unwrap_err()
            .contains("no `boundary`"));
    }

    #[test]
    fn too_many_parts_are_refused() {
        let part = "--XyZ\nContent-Disposition: form-data; name=\"a\"\n\nx\n";
        let body = format!("{}--XyZ--\n", part.repeat(MAX_PARTS + 1));
        check(&body, Err("more than 1000 parts"));
    }
}
