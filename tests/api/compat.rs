//! What adnanh/webhook accepted, served by hookrunner: a signature of any of several providers,
//! `payload-hmac-*` signatures without their prefix or in a list, ids with `/`, XML and
//! multipart bodies, `HOOK_`-style variable names with dots, `request.remote_addr`, and references
//! into JSON held in a header or a query parameter (`parse-parameters-as-json`).

use crate::helpers::{github_signature, TestApp};

const HOOKS: &str = r##"
hooks:
  - id: either
    signature:
      any:
        - {github: {secret: gh-secret}}
        - {gitea: {secret: gt-secret}}
    run: {command: ["true"]}
    response: {mode: wait}
  - id: custom
    signature: {hmac: {secret: h-secret, header: X-Sig, prefix: "sha256="}}
    run: {command: ["true"]}
    response: {mode: wait}
  - id: sendgrid/dir
    signature: none
    run:
      shell: 'printf "%s|%s|%s" "$ID" "$TEXT" "$EVENT"'
      env:
        ID: '{{ payload.app.-id | "" }}'
        TEXT: '{{ payload.app.message["#text"] | "" }}'
        EVENT: '{{ payload.event | "" }}'
    response: {mode: wait, include_output: true}
  - id: header-json
    signature: none
    when:
      all:
        - header.X-Data.kind: build
        - query.opts.dry: "false"
    run:
      shell: 'printf "%s|%s" "$KEY" "$FIRST"'
      env:
        KEY: '{{ header.X-Data.Key }}'
        FIRST: '{{ query.opts.list.0 }}'
    response: {mode: wait, include_output: true}
    on_mismatch: 202
  - id: names
    signature: none
    run:
      command: [/usr/bin/env]
      env:
        HOOK_head_commit.timestamp: '{{ payload.head_commit.timestamp }}'
        HOOK_remote-addr: '{{ request.remote_addr }}'
    response: {mode: wait, include_output: true}
"##;

fn stdout(answer: &crate::helpers::Answer) -> String {
    answer.body["stdout"]
        .as_str()
        .unwrap_or_else(|| panic!("no output: {} {:?}", answer.status, answer.body))
        .to_string()
}

#[tokio::test]
async fn a_signature_of_any_listed_provider_runs_the_hook() {
    let app = TestApp::spawn(HOOKS).await;
    let body = br#"{"ref": "main"}"#;
    let github = github_signature("gh-secret", body);
    let gitea = github_signature("gt-secret", body).replace("sha256=", "");
    let wrong = github_signature("nope", body).replace("sha256=", "");
    let cases: &[(&[(&str, &str)], u16)] = &[
        (&[("X-Hub-Signature-256", &github)], 200),
        (&[("X-Gitea-Signature", &gitea)], 200),
        (&[("X-Gitea-Signature", &wrong)], 401),
        (&[], 401),
    ];
    for (headers, status) in cases {
        let answer = app.post_hook("either", body.to_vec(), headers).await;
        assert_eq!(answer.status, *status, "{headers:?}: {:?}", answer.body);
    }
}

#[tokio::test]
async fn an_hmac_signature_may_omit_its_prefix_or_come_in_a_list() {
    let app = TestApp::spawn(HOOKS).await;
    let body = b"{}";
    let signed = github_signature("h-secret", body);
    let bare = signed.replace("sha256=", "");
    let listed = format!("sha256={},{signed}", "0".repeat(64));
    for (value, status) in [
        (&signed, 200),
        (&bare, 200),
        (&listed, 200),
        (&"0".repeat(64), 401),
    ] {
        let answer = app
            .post_hook("custom", body.to_vec(), &[("X-Sig", value)])
            .await;
        assert_eq!(answer.status, status, "{value}: {:?}", answer.body);
    }
}

#[tokio::test]
async fn an_id_with_a_slash_is_served_and_reads_xml_and_multipart_bodies() {
    let app = TestApp::spawn(HOOKS).await;
    let xml = r#"<app id="7"><message lang="en">Hello!!</message></app>"#;
    let answer = app
        .post_hook("sendgrid/dir", xml, &[("Content-Type", "application/xml")])
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(stdout(&answer), "7|Hello!!|");

    let multipart =
        "--b\r\nContent-Disposition: form-data; name=\"event\"\r\n\r\nmedia.play\r\n--b--\r\n";
    let answer = app
        .post_hook(
            "sendgrid/dir",
            multipart,
            &[("Content-Type", "multipart/form-data; boundary=b")],
        )
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(stdout(&answer), "||media.play");

    let broken = app
        .post_hook("sendgrid/dir", "<app>", &[("Content-Type", "text/xml")])
        .await;
    assert_eq!(broken.status, 400, "{:?}", broken.body);
    for path in ["sendgrid", "sendgrid/dir/x", "sendgrid//dir"] {
        let answer = app.post_hook(path, "{}", &[]).await;
        assert_eq!(answer.status, 404, "{path}");
    }
}

#[tokio::test]
async fn a_command_sees_webhook_style_variable_names_and_the_remote_addr() {
    let app = TestApp::spawn(HOOKS).await;
    let answer = app
        .post_hook(
            "names",
            r#"{"head_commit": {"timestamp": "2026-12-02T15:00:00Z"}}"#,
            &[("Content-Type", "application/json")],
        )
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let output = stdout(&answer);
    assert!(
        output.contains("HOOK_head_commit.timestamp=2026-12-02T15:00:00Z\n"),
        "{output}"
    );
    let remote_addr = output
        .lines()
        .find_map(|line| line.strip_prefix("HOOK_remote-addr=127.0.0.1:"))
        .unwrap_or_else(|| panic!("no remote addr in {output}"));
    assert!(
        remote_addr.parse::<u16>().is_ok_and(|port| port > 0),
        "{remote_addr}"
    );
}

#[tokio::test]
async fn rules_and_env_reach_into_json_held_in_a_header_and_a_query_parameter() {
    let app = TestApp::spawn(HOOKS).await;
    let query = "opts=%7B%22dry%22%3Afalse%2C%22list%22%3A%5B%22first%22%5D%7D";
    let path = format!("/hooks/header-json?{query}");
    let headers = |data: &'static str| [("X-Data", data), ("Content-Type", "application/json")];
    let cases: &[(&str, u16)] = &[
        (r#"{"kind": "build", "Key": "v1"}"#, 200),
        (r#"{"kind": "test", "Key": "v1"}"#, 202),
        ("not json", 202),
    ];
    for (data, status) in cases {
        let answer = app
            .request(reqwest::Method::POST, &path, "{}", &headers(data))
            .await;
        assert_eq!(answer.status, *status, "{data}: {:?}", answer.body);
        if *status == 200 {
            assert_eq!(stdout(&answer), "v1|first");
        }
    }

    let answer = app
        .request(
            reqwest::Method::POST,
            &path,
            "{}",
            &headers(r#"{"kind": "build"}"#),
        )
        .await;
    assert_eq!(answer.status, 422, "no `Key`: {:?}", answer.body);
    assert!(
        answer.body.to_string().contains("header.x-data.Key"),
        "{:?}",
        answer.body
    );
}
