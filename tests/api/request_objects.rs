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
