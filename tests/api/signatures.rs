//! Signatures at the front door: valid ones run the command, every bad one is a 401 that runs nothing.

use crate::helpers::{github_signature, read_when_written, TestApp};

const SECRET: &str = "It's a Secret to Everybody";

fn github_config() -> String {
    format!(
        r#"
hooks:
  - id: github
    signature:
      github: {{secret: ["old-secret", "{SECRET}"]}}
    run:
      shell: 'touch "$HOOK_JOB_ID.ran"'
      workdir: $DIR
"#
    )
}

#[tokio::test]
async fn githubs_published_vector_is_accepted() {
    let app = TestApp::spawn(&github_config()).await;
    let signature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    assert_eq!(github_signature(SECRET, b"Hello, World!"), signature);
    let answer = app
        .post_hook(
            "github",
            "Hello, World!",
            &[("X-Hub-Signature-256", signature)],
        )
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body["exit_code"], 0);
    let job_id = answer.body["job_id"].as_str().unwrap();
    assert!(app.path(&format!("{job_id}.ran")).exists());
}

#[tokio::test]
async fn a_bad_signature_is_refused_and_runs_nothing() {
    let app = TestApp::spawn(&github_config()).await;
    let body = br#"{"ref": "refs/heads/main"}"#;
    let good = github_signature(SECRET, body);
    let cases: Vec<(&str, Vec<(&str, String)>, &[u8], &str)> = vec![
        (
            "body changed after signing",
            vec![("X-Hub-Signature-256", good.clone())],
            br#"{"ref": "refs/heads/evil"}"#,
            "signature_invalid",
        ),
        (
            "another secret",
            vec![("X-Hub-Signature-256", github_signature("wrong", body))],
            body,
            "signature_invalid",
        ),
        (
            "empty",
            vec![("X-Hub-Signature-256", String::new())],
            body,
            "signature_missing",
        ),
        ("missing", vec![], body, "signature_missing"),
        (
            "truncated",
            vec![("X-Hub-Signature-256", good[..good.len() - 2].to_string())],
            body,
            "signature_invalid",
        ),
        (
            "not hex",
            vec![("X-Hub-Signature-256", format!("sha256={}", "zz".repeat(32)))],
            body,
            "signature_invalid",
        ),
        (
            // Taken without its prefix, as adnanh/webhook takes it, but still checked.
            "no prefix, another body's",
            vec![("X-Hub-Signature-256", good[7..].to_string())],
            b"{}",
            "signature_invalid",
        ),
        (
            "a list of wrong ones",
            vec![(
                "X-Hub-Signature-256",
                format!("sha256={0}, {0}", "ab".repeat(32)),
            )],
            body,
            "signature_invalid",
        ),
        (
            "sha1 not allowed",
            vec![(
                "X-Hub-Signature",
                "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59".into(),
            )],
            body,
            "signature_missing",
        ),
        (
            "64 KiB header",
            vec![(
                "X-Hub-Signature-256",
                format!("sha256={}", "a".repeat(60_000)),
            )],
            body,
            "signature_invalid",
        ),
    ];
    for (name, headers, body, code) in cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let answer = app.post_hook("github", body.to_vec(), &headers).await;
        assert_eq!(answer.status, 401, "{name}: {:?}", answer.body);
        assert_eq!(answer.body["error"], code, "{name}");
        let message = answer.body["message"].as_str().unwrap();
        assert!(
            !message.contains(&good[7..]),
            "{name}: the answer leaks the expected signature"
        );
    }
    let ran = std::fs::read_dir(app.dir.path())
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".ran")
        })
        .count();
    assert_eq!(ran, 0, "a refused request ran a command");
}

#[tokio::test]
async fn gitlab_and_token_hooks_compare_tokens() {
    let app = TestApp::spawn(
        r#"
hooks:
  - id: gitlab
    signature: {gitlab: {secret: glpat-token}}
    run: {command: ["true"]}
  - id: query-token
    signature: {token: {query: key, secret: k3y}}
    run: {command: ["true"]}
"#,
    )
    .await;
    let cases: &[(&str, &str, &[(&str, &str)], u16)] = &[
        ("gitlab", "", &[("X-Gitlab-Token", "glpat-token")], 200),
        ("gitlab", "", &[("X-Gitlab-Token", "glpat-tokem")], 401),
        ("gitlab", "", &[], 401),
        ("query-token", "?key=k3y", &[], 200),
        ("query-token", "?key=nope", &[], 401),
        ("query-token", "", &[], 401),
    ];
    for (hook, query, headers, status) in cases {
        let answer = app
            .request(
                reqwest::Method::POST,
                &format!("/hooks/{hook}{query}"),
                "{}",
                headers,
            )
            .await;
        assert_eq!(
            answer.status, *status,
            "{hook}{query} {headers:?}: {:?}",
            answer.body
        );
    }
}

#[tokio::test]
async fn githubs_form_mode_is_verified_on_the_raw_body_and_parsed_after() {
    let app = TestApp::spawn(
        r#"
hooks:
  - id: form
    signature: {github: {secret: s}}
    when: {payload.payload.ref: refs/heads/main}
    run:
      shell: 'printf "%s" "$REF" > ref.txt'
      workdir: $DIR
      env: {REF: "{{ payload.payload.ref }}"}
"#,
    )
    .await;
    let body = "payload=%7B%22ref%22%3A%22refs%2Fheads%2Fmain%22%7D";
    let signature = github_signature("s", body.as_bytes());
    let answer = app
        .post_hook(
            "form",
            body,
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("X-Hub-Signature-256", &signature),
            ],
        )
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(
        read_when_written(&app.path("ref.txt")).await,
        "refs/heads/main"
    );
}
