//! What a hook's own `response` settings change in its answers: a fixed message, added headers,
//! the success status, and the output of a failed job.

use crate::helpers::TestApp;

const CONFIG: &str = r#"
hooks:
  - id: quiet
    signature: none
    run: {command: ["true"], workdir: $DIR}
    response:
      message: Hook rules were satisfied
      success_status: 201
      headers: {Access-Control-Allow-Origin: "*", X-Served-By: hookrunner}
  - id: later
    signature: none
    run: {command: ["true"], workdir: $DIR}
    response: {mode: async, message: queued, success_status: 200}
  - id: on-error
    signature: none
    run: {command: [sh, -c, 'echo out; echo err >&2; exit "$CODE"'], env: {CODE: "{{ payload.code }}"}, workdir: $DIR}
    response:
      include_output: on_error
      message: fine
      headers: {Content-Type: application/json}
  - id: closed
    signature: {token: {header: X-Token, secret: letmein}}
    run: {command: ["true"], workdir: $DIR}
    response: {headers: {X-Served-By: hookrunner}}
"#;

#[tokio::test]
async fn a_hook_with_a_message_answers_it_as_text_with_its_headers_and_success_status() {
    let app = TestApp::spawn(CONFIG).await;
    let answer = app.post_hook("quiet", "{}", &[]).await;
    assert_eq!(answer.status, 201);
    assert_eq!(answer.body, "Hook rules were satisfied");
    assert_eq!(answer.headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(answer.headers["access-control-allow-origin"], "*");
    assert_eq!(answer.headers["x-served-by"], "hookrunner");
}

#[tokio::test]
async fn an_async_hook_answers_its_message_with_its_success_status() {
    let app = TestApp::spawn(CONFIG).await;
    let answer = app.post_hook("later", "{}", &[]).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "queued");
}

#[tokio::test]
async fn output_on_error_shows_the_output_of_a_failed_job_only() {
    let app = TestApp::spawn(CONFIG).await;
    let json = [("Content-Type", "application/json")];
    let failed = app.post_hook("on-error", r#"{"code": 3}"#, &json).await;
    assert_eq!(failed.status, 500);
    assert_eq!(failed.headers["content-type"], "application/json");
    assert_eq!(failed.body["status"], "failed", "{:?}", failed.body);
    assert_eq!(failed.body["stdout"], "out\n");
    assert_eq!(failed.body["stderr"], "err\n");

    let succeeded = app.post_hook("on-error", r#"{"code": 0}"#, &json).await;
    assert_eq!(succeeded.status, 200);
    assert_eq!(succeeded.body, "fine", "the message, with its own type");
    assert_eq!(succeeded.headers["content-type"], "application/json");
}

#[tokio::test]
async fn the_headers_come_with_every_answer_of_the_hook_even_a_refusal() {
    let app = TestApp::spawn(CONFIG).await;
    let refused = app.post_hook("closed", "{}", &[]).await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.headers["x-served-by"], "hookrunner");
    let ran = app
        .post_hook("closed", "{}", &[("X-Token", "letmein")])
        .await;
    assert_eq!(ran.status, 200);
    assert_eq!(ran.body["status"], "succeeded", "no message: the job body");
    assert_eq!(ran.headers["x-served-by"], "hookrunner");
}
