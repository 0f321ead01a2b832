//! Running commands: the environment they get, payload text that never reaches a shell parser,
//! timeouts that kill the whole group, and commands that fail or cannot start.

use std::collections::BTreeMap;

use serde_json::json;

use crate::helpers::{
    github_signature, process_is_gone, read_line_when_written, read_when_written, TestApp,
};

const PUSH: &str = r#"{
  "ref": "refs/heads/main",
  "before": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
  "after": "76ae82e1c1d4f0a23a1c0c0d0b2e1d0e5c3f1a9b",
  "repository": {"id": 1296269, "full_name": "octocat/Hello-World", "private": false},
  "pusher": {"name": "octocat", "email": "octocat@github.com"},
  "head_commit": {"id": "76ae82e1c1d4f0a23a1c0c0d0b2e1d0e5c3f1a9b", "message": "Fix the \"build\"; $(rm -rf /)", "modified": ["README.md"]},
  "commits": [{"id": "76ae82e1", "modified": ["README.md", "src/app.rs"]}]
}"#;

#[tokio::test]
async fn a_push_to_main_with_a_valid_signature_runs_the_deploy_with_its_environment() {
    let app = TestApp::spawn(
        r#"
hooks:
  - id: deploy-site
    signature: {github: {secret: push-secret}}
    when:
      all:
        - header.X-GitHub-Event: push
        - payload.ref: refs/heads/main
        - payload.commits.*.modified.*: {matches: "^src/"}
    run:
      shell: 'env > env.txt'
      workdir: $DIR
      env:
        COMMIT: "{{ payload.after }}"
        PUSHER: "{{ payload.pusher.name }}"
        MESSAGE: "{{ payload.head_commit.message }}"
        PRIVATE: "{{ payload.repository.private }}"
        MODE: production
"#,
    )
    .await;
    let signature = github_signature("push-secret", PUSH.as_bytes());
    let answer = app
        .post_hook(
            "deploy-site",
            PUSH,
            &[
                ("Content-Type", "application/json"),
                ("X-Hub-Signature-256", &signature),
                ("X-GitHub-Event", "push"),
                ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            ],
        )
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body["status"], "succeeded");
    assert!(
        answer.body.get("stdout").is_none(),
        "output only with include_output"
    );

    let text = read_when_written(&app.path("env.txt")).await;
    let env: BTreeMap<&str, &str> = text
        .lines()
        .filter_map(|line| line.split_once('='))
        .collect();
    assert_eq!(env["COMMIT"], "76ae82e1c1d4f0a23a1c0c0d0b2e1d0e5c3f1a9b");
    assert_eq!(env["PUSHER"], "octocat");
    assert_eq!(env["MESSAGE"], "Fix the \"build\"; $(rm -rf /)");
    assert_eq!(env["PRIVATE"], "false");
    assert_eq!(env["MODE"], "production");
    assert_eq!(env["HOOK_ID"], "deploy-site");
    assert_eq!(env["HOOK_JOB_ID"], answer.body["job_id"].as_str().unwrap());
    assert_eq!(env["HOOK_EVENT"], "push");
    assert_eq!(
        env["HOOK_DELIVERY_ID"],
        "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    );
    assert_eq!(
        env["HOOK_REQUEST_ID"],
        answer.headers["x-request-id"].to_str().unwrap()
    );
    // Nothing else of the server's environment reaches the command: the test process has
    // CARGO_* variables, and none of them may appear.
    assert!(std::env::vars().any(|(name, _)| name.starts_with("CARGO")));
    let allowed = [
        "PATH", "HOME", "LANG", "TZ", "PWD", "SHLVL", "_", "COMMIT", "PUSHER", "MESSAGE",
        "PRIVATE", "MODE",
    ];
    for name in env.keys() {
        assert!(
            allowed.contains(name) || name.starts_with("HOOK_"),
            "`{name}` leaked into the command"
        );
    }
}

#[tokio::test]
async fn payload_text_is_never_parsed_by_a_shell_and_an_argv_element_stays_one_argument() {
    let app = TestApp::spawn(
        r#"
hooks:
  - id: shell
    signature: none
    run:
      shell: 'printf "%s" "$VALUE" > value.txt'
      workdir: $DIR
      env: {VALUE: "{{ payload.value }}"}
  - id: argv
    signature: none
    run:
      command: ["/bin/sh", "-c", 'printf "%s" "$#" > argc.txt; printf "%s" "$1" > arg1.txt', "sh", "{{ payload.value }}"]
      workdir: $DIR
"#,
    )
    .await;
    let hostile = "$(touch pwned1) `touch pwned2`; touch pwned3 && echo 'single' \"double\" | cat > pwned4 \n next line";
    let body = json!({ "value": hostile }).to_string();
    for hook in ["shell", "argv"] {
        let answer = app
            .post_hook(hook, body.clone(), &[("Content-Type", "application/json")])
            .await;
        assert_eq!(answer.status, 200, "{hook}: {:?}", answer.body);
    }
    assert_eq!(read_when_written(&app.path("value.txt")).await, hostile);
    assert_eq!(read_when_written(&app.path("argc.txt")).await, "1");
    assert_eq!(read_when_written(&app.path("arg1.txt")).await, hostile);
    for name in ["pwned1", "pwned2", "pwned3", "pwned4"] {
        assert!(
            !app.path(name).exists(),
            "payload text was executed: {name} exists"
        );
    }
}

#[tokio::test]
async fn a_timed_out_command_is_killed_with_its_background_grandchild() {
    let app = TestApp::spawn(
        r#"
hooks:
  - id: slow
    signature: none
    run:
      shell: 'sleep 60 & echo $! > grandchild.pid; trap "" TERM; wait'
      workdir: $DIR
      timeout: 500ms
      kill_after: 300ms
"#,
    )
    .await;
    let started = std::time::Instant::now();
    let answer = app.post_hook("slow", "", &[]).await;
    assert_eq!(answer.status, 504, "{:?}", answer.body);
    assert_eq!(answer.body["status"], "timed_out");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let pid: i32 = read_line_when_written(&app.path("grandchild.pid"))
        .await
        .trim()
        .parse()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !process_is_gone(pid) {
        assert!(
            std::time::Instant::now() < deadline,
            "grandchild {pid} survived the timeout"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[tokio::test]
async fn failures_and_commands_that_cannot_start_are_recorded_not_crashes() {
    let app = TestApp::spawn(
        r#"
hooks:
  - id: exits-3
    signature: none
    run: {shell: 'echo oops >&2; exit 3'}
    response: {include_output: true}
  - id: missing-program
    signature: none
    run: {command: ["./no-such-program", "x"]}
    response: {failure_status: 502}
  - id: missing-workdir
    signature: none
    run: {command: ["true"], workdir: /no/such/dir}
"#,
    )
    .await;
    let exits = app.post_hook("exits-3", "", &[]).await;
    assert_eq!(exits.status, 500);
    assert_eq!(exits.body["status"], "failed");
    assert_eq!(exits.body["exit_code"], 3);
    assert_eq!(exits.body["stderr"], "oops\n");

    let missing = app.post_hook("missing-program", "", &[]).await;
    assert_eq!(missing.status, 502);
    assert_eq!(missing.body["status"], "failed");
    assert_eq!(missing.body["exit_code"], serde_json::Value::Null);
    let error = missing.body["error"].as_str().unwrap();
    assert!(
        error.contains("./no-such-program") && error.contains("No such file"),
        "{error}"
    );

    let workdir = app.post_hook("missing-workdir", "", &[]).await;
    assert_eq!(workdir.status, 500);
    assert!(workdir.body["error"]
        .as_str()
        .unwrap()
        .contains("/no/such/dir"));

    // The server still answers after all of that.
    let health = app.request(reqwest::Method::GET, "/healthz", "", &[]).await;
    assert_eq!(health.status, 200);
}

#[tokio::test]
async fn stdin_can_carry_the_raw_payload() {
    let app = TestApp::spawn(
        r#"
hooks:
  - id: stdin
    signature: none
    run: {shell: 'cat > body.bin', workdir: $DIR, stdin: payload}
"#,
    )
    .await;
    let body = "raw \u{1F600} body, not parsed";
    assert_eq!(app.post_hook("stdin", body, &[]).await.status, 200);
    assert_eq!(read_when_written(&app.path("body.bin")).await, body);
}

#[tokio::test]
async fn a_job_longer_than_wait_timeout_answers_202_and_keeps_running() {
    let app = TestApp::spawn(
        r#"
hooks:
  - id: long
    signature: none
    run: {shell: 'sleep 1; echo done > done.txt', workdir: $DIR}
    response: {wait_timeout: 200ms}
"#,
    )
    .await;
    let answer = app.post_hook("long", "", &[]).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    assert_eq!(answer.body["status"], "running");
    let job_id = answer.body["job_id"].as_str().unwrap();
    assert_eq!(answer.body["links"]["job"], format!("/jobs/{job_id}"));
    let job = app
        .wait_for_job(job_id, |job| job["status"] == "succeeded")
        .await;
    assert_eq!(job["exit_code"], 0);
    assert_eq!(read_when_written(&app.path("done.txt")).await, "done\n");
}

#[tokio::test]
async fn a_queued_hook_never_overlaps_two_runs() {
    let app = TestApp::spawn(
        r#"
hooks:
  - id: one-at-a-time
    signature: none
    run:
      shell: 'mkdir lock || { echo overlap >> overlaps; exit 1; }; sleep 0.2; rmdir lock'
      workdir: $DIR
"#,
    )
    .await;
    let requests = (0..4).map(|_| app.post_hook("one-at-a-time", "", &[]));
    let answers = futures_util::future::join_all(requests).await;
    for answer in answers {
        assert_eq!(answer.status, 200, "{:?}", answer.body);
    }
    assert!(!app.path("overlaps").exists());
}
