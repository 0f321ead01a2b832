//! A hook's `response:`: how it answers (mode, statuses, output), and the fixed message and
//! headers an operator may give its answers.

use std::time::Duration;

use serde_yaml::Value;

use super::decode::{key_text, scalar_text, Decoder};
use super::source_map::{Part, YamlPath};
use super::{Message, ResponseMode, ResponseSettings};

const KEYS: &[&str] = &[
    "mode",
    "wait_timeout",
    "include_output",
    "failure_status",
    "success_status",
    "message",
    "headers",
];

/// Headers the server itself manages for each connection or body; an operator's value would
/// break the answer, so they are refused (lower case).
const MANAGED_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "content-encoding",
    // hookrunner's own: a 503's `Retry-After`, a stream's `X-Accel-Buffering`, the request id.
    "retry-after",
    "x-accel-buffering",
    "x-request-id",
];

const MESSAGE_TYPE: &str = "text/plain; charset=utf-8";

/// A hook's answers when it has no `response:`.
pub fn default() -> ResponseSettings {
    ResponseSettings {
        mode: ResponseMode::Wait,
        wait_timeout: Duration::from_secs(25),
        include_output: false,
        output_on_error: false,
        failure_status: 500,
        success_status: None,
        message: None,
        headers: Vec::new(),
    }
}

pub fn decode(
    decoder: &mut Decoder<'_>,
    value: &Value,
    path: &YamlPath,
) -> Option<ResponseSettings> {
    let fields = decoder.mapping(value, path, "`response`", KEYS)?;
    let mut response = default();
    let mut valid = true;
    if let Some((value, path)) = fields.get("mode") {
        let modes = [
            ("wait", ResponseMode::Wait),
            ("async", ResponseMode::Async),
            ("stream", ResponseMode::Stream),
        ];
        match decoder.choice(value, &path, &modes) {
            Some(mode) => response.mode = mode,
            None => valid = false,
        }
    }
    if let Some((value, path)) = fields.get("wait_timeout") {
        match decoder.duration(value, &path) {
            Some(timeout) => response.wait_timeout = timeout,
            None => valid = false,
        }
    }
    if let Some((value, path)) = fields.get("include_output") {
        let choices = [
            ("true", (true, true)),
            ("false", (false, false)),
            ("on_error", (false, true)),
        ];
        match decoder.choice(value, &path, &choices) {
            Some((always, on_error)) => {
                response.include_output = always;
                response.output_on_error = on_error;
            }
            None => valid = false,
        }
    }
    if let Some((value, path)) = fields.get("failure_status") {
        match decoder.status(value, &path) {
            Some(status) => response.failure_status = status,
            None => valid = false,
        }
    }
    if let Some((value, path)) = fields.get("success_status") {
        match decoder.number(value, &path, 200, 299) {
            Some(status) => response.success_status = Some(status as u16),
            None => valid = false,
        }
    }
    let mut content_type = None;
    if let Some((value, path)) = fields.get("headers") {
        match decode_headers(decoder, value, &path) {
            Some((headers, given_type)) => {
                response.headers = headers;
                content_type = given_type;
            }
            None => valid = false,
        }
    }
    if let Some((value, path)) = fields.get("message") {
        if response.mode == ResponseMode::Stream {
            decoder.error(
                &path,
                Part::Key,
                "`message` does not go with `mode: stream`, whose answer is the command's output; use `wait` or `async`, or remove `message`",
            );
            valid = false;
        }
        match decoder.string(value, &path) {
            Some(text) => {
                response.message = Some(Message {
                    text,
                    content_type: content_type.take().unwrap_or_else(|| MESSAGE_TYPE.into()),
                });
            }
            None => valid = false,
        }
    }
    if content_type.is_some() {
        if let Some((_, path)) = fields.get("headers") {
            decoder.error(
                &path.key("Content-Type"),
                Part::Key,
                "`Content-Type` is set by hookrunner for its JSON answers; it may be given only with a `message`, whose type it then is",
            );
        }
        valid = false;
    }
    valid.then_some(response)
}

/// `headers: {Name: value}`; the `Content-Type` apart, since it belongs to the message.
fn decode_headers(
    decoder: &mut Decoder<'_>,
    value: &Value,
    path: &YamlPath,
) -> Option<(Vec<(String, String)>, Option<String>)> {
    let Value::Mapping(map) = value else {
        decoder.error(
            path,
            Part::Value,
            "`headers` must be a mapping of header names to values, such as `{Access-Control-Allow-Origin: \"*\"}`",
        );
        return None;
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut content_type = None;
    let mut valid = true;
    for (key, value) in map {
        let name = key_text(key);
        let value_path = path.key(&name);
        let lower = name.to_ascii_lowercase();
        let problem = header_name_problem(&name).or_else(|| {
            headers
                .iter()
                .any(|(existing, _)| existing.eq_ignore_ascii_case(&name))
                .then(|| format!("`{name}` is given twice (header names ignore case); keep one"))
        });
        if let Some(problem) = problem {
            decoder.error(&value_path, Part::Key, problem);
            valid = false;
            continue;
        }
        let Some(text) = scalar_text(value) else {
            decoder.error(
                &value_path,
                Part::Value,
                "a header value must be text, a number or a boolean",
            );
            valid = false;
            continue;
        };
        if let Some(problem) = header_value_problem(&text) {
            decoder.error(&value_path, Part::Value, problem);
            valid = false;
            continue;
        }
        if lower == "content-type" {
            content_type = Some(text);
        } else {
            headers.push((name, text));
        }
    }
    valid.then_some((headers, content_type))
}

/// Why `name` cannot be one of `response.headers`: not an HTTP token, or a header the server
/// manages itself.
pub fn header_name_problem(name: &str) -> Option<String> {
    let token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_|~`".contains(&b));
    if !token {
        return Some(format!(
            "`{name}` is not a valid header name (letters, digits and `!#$%&'*+-.^_|~`)"
        ));
    }
    MANAGED_HEADERS
        .contains(&name.to_ascii_lowercase().as_str())
        .then(|| format!("`{name}` is managed by the server for each answer; remove it"))
}

/// Why a header value cannot be sent as given: templates are not rendered here, and control
/// characters (a line break above all) would split the answer.
pub fn header_value_problem(value: &str) -> Option<&'static str> {
    if value.contains("{{") {
        return Some("`{{ }}` is not allowed in a header value: answers' headers are fixed text");
    }
    if !value
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
    {
        return Some(
            "a header value may hold printable ASCII only, no line breaks or control characters",
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{load_str, Config, ConfigErrors};

    fn load(response: &str) -> Result<Config, ConfigErrors> {
        let text = format!("hooks:\n  - id: a\n    signature: none\n    run: {{command: [x]}}\n    response:\n{response}");
        load_str(&text, Path::new("/etc/hookrunner/hooks.yaml"), &|_| None)
    }

    #[test]
    fn answers_settings_decode() {
        let config = load("      message: done\n      success_status: 201\n      include_output: on_error\n      headers: {Access-Control-Allow-Origin: \"*\", X-Count: 3}\n")
            .unwrap_or_else(|errors| panic!("{}", errors.render()));
        let response = &config.hook("a").unwrap().response;
        let message = response.message.as_ref().expect("a message");
        assert_eq!(message.text, "done");
        assert_eq!(message.content_type, "text/plain; charset=utf-8");
        assert_eq!(response.success_status, Some(201));
        assert!(!response.include_output && response.output_on_error);
        assert_eq!(
            response.headers,
            [
                ("Access-Control-Allow-Origin".to_string(), "*".to_string()),
                ("X-Count".to_string(), "3".to_string())
            ]
        );

        let config = load("      message: '{\"ok\": true}'\n      headers: {content-type: application/json}\n      include_output: true\n").unwrap();
        let response = &config.hook("a").unwrap().response;
        assert_eq!(
            response.message.as_ref().unwrap().content_type,
            "application/json"
        );
        assert!(
            response.headers.is_empty(),
            "the type belongs to the message"
        );
        assert!(response.include_output && response.output_on_error);
    }

    #[test]
    fn bad_answers_settings_are_refused_with_a_reason() {
        let cases = [
            (
                "      success_status: 300\n",
                "hooks.yaml:6:23: expected a whole number from 200 to 299",
            ),
            (
                "      success_status: 199\n",
                "expected a whole number from 200 to 299",
            ),
            (
                "      include_output: sometimes\n",
                "`sometimes` is not one of `true`, `false`, `on_error`",
            ),
            (
                "      headers: {\"X Bad\": 1}\n",
                "hooks.yaml:6:17: `X Bad` is not a valid header name",
            ),
            (
                "      headers: {Connection: close}\n",
                "`Connection` is managed by the server for each answer",
            ),
            (
                "      headers: {Content-Length: 3}\n",
                "`Content-Length` is managed by the server",
            ),
            (
                "      headers: {Retry-After: 5}\n",
                "`Retry-After` is managed by the server",
            ),
            (
                "      headers: {Transfer-Encoding: chunked}\n",
                "`Transfer-Encoding` is managed by the server",
            ),
            ("      headers: {X-A: 1, x-a: 2}\n", "`x-a` is given twice"),
            (
                "      headers: {X-A: \"{{ payload.a }}\"}\n",
                "`{{ }}` is not allowed in a header value",
            ),
            ("      headers: {X-A: \"a\\nb\"}\n", "printable ASCII only"),
            ("      headers: [X-A]\n", "`headers` must be a mapping"),
            (
                "      headers: {Content-Type: text/html}\n",
                "may be given only with a `message`",
            ),
            (
                "      mode: stream\n      message: hi\n",
                "`message` does not go with `mode: stream`",
            ),
        ];
        for (response, expected) in cases {
            match load(response) {
                Ok(_) => panic!("expected an error for {response}"),
                Err(errors) => {
                    let rendered = errors.render();
                    assert!(rendered.contains(expected), "{response}: {rendered}");
                }
            }
        }
    }
}
