//! `headers` and `query`: all of a request's headers or query parameters as one JSON object,
//! given to the command like any other value.

use crate::helpers::TestApp;

const CONFIG: &str = r#"
hooks:
  - id: whole
    signature: none
    run:
      command: [sh, -c, 'printf "%s\n%s\n%s\n" "$1" "$HEADERS" "$2"', sh, "{{ query }}", "{{ payload }}"]
      env: {HEADERS: "{{ headers }}"}
      workdir: $DIR
    response: {include_output: true}
"#;

#[tokio::test]
async fn the_command_gets_all_headers_and_query_parameters_as_json() {
    let app = TestApp::spawn(CONFIG).await;
    let answer = app
        .request(
            reqwest::Method::POST,
            "/hooks/whole?tag=a&tag=b&env=prod",
            r#"{"a": {"b": 1}}"#,
            &[("Content-Type", "application/json"), ("X-Trace", "t-1")],
        )
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let stdout = answer.body["stdout"].as_str().expect("the output");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], r#"{"tag":["a","b"],"env":"prod"}"#);
    let headers: serde_json::Value = serde_json::from_str(lines[1]).expect("headers as JSON");
    assert_eq!(headers["x-trace"], "t-1");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(lines[2], r#"{"a":{"b":1}}"#);
}

const BODY_TYPES: &str = r#"
hooks:
  - id: as-json
    signature: none
    body_type: json
    run: {command: [echo, "{{ payload.a }}"], workdir: $DIR}
    response: {include_output: true}
  - id: as-form
    signature: none
    body_type: form
    run: {command: [echo, "{{ payload.a }}"], workdir: $DIR}
    response: {include_output: true}
"#;

#[tokio::test]
async fn body_type_parses_the_body_whatever_its_content_type_says() {
    let app = TestApp::spawn(BODY_TYPES).await;
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let json = app
        .post_hook("as-json", r#"{"a": "from json"}"#, &form)
        .await;
    assert_eq!(json.status, 200, "{:?}", json.body);
    assert_eq!(json.body["stdout"], "from json\n");
    let plain = [("Content-Type", "application/json")];
    let form = app.post_hook("as-form", "a=from+form", &plain).await;
    assert_eq!(form.status, 200, "{:?}", form.body);
    assert_eq!(form.body["stdout"], "from form\n");
}
