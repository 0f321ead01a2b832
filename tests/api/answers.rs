//! What the server answers when a request is wrong: each check in its order, each with a clear error.

use crate::helpers::TestApp;

const CONFIG: &str = r#"
server:
  max_body: 1KiB
hooks:
  - id: deploy
    signature: none
    methods: [POST, PUT]
    when:
      any:
        - payload.ref: refs/heads/main
        - header.X-Force: "yes"
    run:
      command: [sh, -c, 'touch ran', sh, "{{ payload.after }}"]
      workdir: $DIR
  - id: picky
    signature: none
    when: {payload.action: {in: [opened, reopened]}}
    on_mismatch: 202
    run: {command: ["true"], workdir: $DIR}
  - id: big
    signature: none
    max_body: 4KiB
    run: {command: ["true"], workdir: $DIR}
"#;

#[tokio::test]
async fn each_bad_request_gets_its_status_and_runs_nothing() {
    let app = TestApp::spawn(CONFIG).await;
    let json = [("Content-Type", "application/json")];
    let post = reqwest::Method::POST;
    let cases: Vec<(&str, reqwest::Method, &str, String, u16, &str)> = vec![
        (
            "unknown hook",
            post.clone(),
            "/hooks/nope",
            "{}".into(),
            404,
            "hook_not_found",
        ),
        (
            "nothing there",
            post.clone(),
            "/elsewhere",
            "{}".into(),
            404,
            "not_found",
        ),
        (
            "traversal",
            post.clone(),
            "/hooks/..%2f..%2fetc",
            "{}".into(),
            404,
            "hook_not_found",
        ),
        (
            "wrong method",
            reqwest::Method::DELETE,
            "/hooks/deploy",
            "{}".into(),
            405,
            "method_not_allowed",
        ),
        (
            "too large",
            post.clone(),
            "/hooks/deploy",
            "x".repeat(2000),
            413,
            "body_too_large",
        ),
        (
            "malformed JSON",
            post.clone(),
            "/hooks/deploy",
            "{\"ref\": ".into(),
            400,
            "bad_body",
        ),
        (
            "missing value",
            post.clone(),
            "/hooks/deploy",
            r#"{"ref": "refs/heads/main"}"#.into(),
            422,
            "missing_value",
        ),
    ];
    for (name, method, path, body, status, code) in cases {
        let answer = app.request(method, path, body, &json).await;
        assert_eq!(answer.status, status, "{name}: {:?}", answer.body);
        assert_eq!(answer.body["error"], code, "{name}");
        assert!(
            !answer.body["message"].as_str().unwrap_or("").is_empty(),
            "{name}"
        );
        assert!(
            answer.headers.contains_key("x-request-id"),
            "{name}: no X-Request-Id"
        );
    }
    let wrong_method = app
        .request(reqwest::Method::GET, "/hooks/deploy", "", &[])
        .await;
    assert_eq!(wrong_method.headers["allow"], "POST, PUT");
    let missing = app
        .post_hook("deploy", r#"{"ref": "refs/heads/main"}"#, &json)
        .await;
    assert!(missing.body["message"]
        .as_str()
        .unwrap()
        .contains("`payload.after`"));
    assert!(
        !app.path("ran").exists(),
        "a rejected request ran the command"
    );

    // A header-only rule never needs the body, so a body that is not JSON is fine there.
    let forced = app
        .post_hook("deploy", "not json", &[("X-Force", "yes")])
        .await;
    assert_eq!(
        forced.status, 400,
        "the template still needs the payload: {:?}",
        forced.body
    );
}

#[tokio::test]
async fn a_rule_mismatch_is_skipped_with_a_reason() {
    let app = TestApp::spawn(CONFIG).await;
    let json = [("Content-Type", "application/json")];
    let skipped = app
        .post_hook(
            "deploy",
            r#"{"ref": "refs/heads/dev", "after": "x"}"#,
            &json,
        )
        .await;
    assert_eq!(skipped.status, 200);
    assert_eq!(skipped.body["status"], "skipped");
    assert!(
        skipped.body["reason"]
            .as_str()
            .unwrap()
            .contains("payload.ref"),
        "{:?}",
        skipped.body
    );

    let custom = app
        .post_hook("picky", r#"{"action": "closed"}"#, &json)
        .await;
    assert_eq!(custom.status, 202);
    assert_eq!(custom.body["status"], "skipped");
    assert!(!app.path("ran").exists());

    let ran = app
        .post_hook(
            "deploy",
            r#"{"ref": "refs/heads/main", "after": "abc"}"#,
            &json,
        )
        .await;
    assert_eq!(ran.status, 200, "{:?}", ran.body);
    assert!(app.path("ran").exists());
}

#[tokio::test]
async fn a_hook_may_raise_the_body_limit_and_chunked_bodies_are_limited_too() {
    let app = TestApp::spawn(CONFIG).await;
    assert_eq!(
        app.post_hook("big", "x".repeat(3000), &[]).await.status,
        200
    );
    assert_eq!(
        app.post_hook("big", "x".repeat(5000), &[]).await.status,
        413
    );
    // A body sent without Content-Length is cut off at the limit as it streams.
    let chunks: Vec<Result<String, std::io::Error>> =
        (0..10).map(|_| Ok("z".repeat(1000))).collect();
    let stream = futures_util::stream::iter(chunks);
    let answer = app
        .post_hook("big", reqwest::Body::wrap_stream(stream), &[])
        .await;
    assert_eq!(answer.status, 413, "{:?}", answer.body);
}

#[tokio::test]
async fn every_answer_has_a_request_id_and_health_is_served() {
    let app = TestApp::spawn(CONFIG).await;
    let health = app.request(reqwest::Method::GET, "/healthz", "", &[]).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.body["status"], "ok");
    let first = health.headers["x-request-id"].to_str().unwrap().to_string();
    // An untrusted peer cannot choose its request id.
    let spoofed = app
        .request(
            reqwest::Method::GET,
            "/healthz",
            "",
            &[("X-Request-Id", "chosen")],
        )
        .await;
    let second = spoofed.headers["x-request-id"].to_str().unwrap();
    assert_ne!(first, second);
    assert_ne!(second, "chosen");
    assert_eq!(app.get_job("not-a-job").await.status, 404);
}

#[tokio::test]
async fn json_sent_as_form_data_is_named_in_the_missing_value_and_skipped_answers() {
    let app = TestApp::spawn(CONFIG).await;
    let hint = "the body was read as form data but looks like JSON; send it with `Content-Type: application/json`";
    // What `curl -d '{...}'` sends without `-H 'Content-Type: application/json'`.
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let json = [("Content-Type", "application/json")];
    let cases: &[(&str, &str, &[(&str, &str)], u16, bool)] = &[
        ("picky", r#"{"action": "opened"}"#, &form, 202, true),
        ("picky", "  [1, 2]", &form, 202, true),
        ("picky", "action=closed", &form, 202, false),
        ("picky", r#"{"action": "closed"}"#, &json, 202, false),
        // A header makes the rule hold; the command's payload value is then missing.
        ("deploy", r#"{"after": "abc"}"#, &form, 422, true),
        ("deploy", "after2=abc", &form, 422, false),
    ];
    for (hook, body, headers, status, hinted) in cases {
        let mut headers = headers.to_vec();
        headers.push(("X-Force", "yes"));
        let answer = app.post_hook(hook, *body, &headers).await;
        assert_eq!(answer.status, *status, "{body}: {:?}", answer.body);
        let text = match *status {
            422 => &answer.body["message"],
            _ => &answer.body["reason"],
        };
        let text = text.as_str().expect("a message or reason");
        assert_eq!(text.contains(hint), *hinted, "{hook} {body}: {text}");
    }
    assert!(!app.path("ran").exists());
}
