//! What adnanh/webhook accepted, served by hookrunner: a signature of any of several providers,
//! `payload-hmac-*` signatures without their prefix or in a list, ids with `/`, XML and
//! multipart bodies, `HOOK_`-style variable names with dots, and `request.remote_addr`.

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
