//! `run.files`: request values written to private files for the command, gone when the job ends.

use std::path::Path;

use crate::helpers::{read_when_written, TestApp};

const CONFIG: &str = r#"
server: {admin_token: "admin-s3cret"}
hooks:
  - id: files
    signature: none
    run:
      command:
        - sh
        - -c
        - 'echo "$KEY" > "$0/path"; cat "$KEY"; echo; cat "$RAW"; echo; stat -c %a "$KEY" "$(dirname "$KEY")"'
        - $DIR
      files:
        KEY: {value: "{{ payload.key }}", base64_decode: true}
        RAW: "{{ payload.note }}"
      workdir: $DIR
    response: {include_output: true}
  - id: slow
    signature: none
    run:
      command: [sh, -c, 'echo "$NOTE" > "$0/slow-tmp"; mv "$0/slow-tmp" "$0/slow-path"; sleep 30', $DIR]
      files: {NOTE: "{{ payload.note }}"}
      workdir: $DIR
    response: {mode: async}
"#;

#[tokio::test]
async fn the_command_reads_its_values_from_private_files_that_are_gone_after_the_job() {
    let app = TestApp::spawn(CONFIG).await;
    let json = [("Content-Type", "application/json")];
    let answer = app
        .post_hook("files", r#"{"key": "aGVsbG8=", "note": "a b"}"#, &json)
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body["stdout"], "hello\na b\n600\n700\n");
    let path = std::fs::read_to_string(app.path("path")).unwrap();
    let path = Path::new(path.trim());
    assert!(
        path.starts_with(app.path("state").join("files")),
        "{}",
        path.display()
    );
    assert!(!path.exists(), "the file is removed");
    assert!(!path.parent().unwrap().exists(), "and its folder");
}

#[tokio::test]
async fn a_value_that_is_not_base64_is_refused_and_runs_nothing() {
    let app = TestApp::spawn(CONFIG).await;
    let json = [("Content-Type", "application/json")];
    let answer = app
        .post_hook("files", r#"{"key": "not base64!", "note": ""}"#, &json)
        .await;
    assert_eq!(answer.status, 422);
    assert_eq!(answer.body["error"], "invalid_value", "{:?}", answer.body);
    assert!(!app.path("path").exists());
}

#[tokio::test]
async fn a_cancelled_job_leaves_no_files() {
    let app = TestApp::spawn(CONFIG).await;
    let json = [("Content-Type", "application/json")];
    let accepted = app.post_hook("slow", r#"{"note": "x"}"#, &json).await;
    assert_eq!(accepted.status, 202);
    let id = accepted.body["job_id"]
        .as_str()
        .expect("a job id")
        .to_string();
    let path = read_when_written(&app.path("slow-path")).await;
    let path = Path::new(path.trim()).to_path_buf();
    assert!(path.exists(), "the file is there while the job runs");
    let cancel = app
        .request(
            reqwest::Method::POST,
            &format!("/jobs/{id}/cancel"),
            "",
            &[("Authorization", "Bearer admin-s3cret")],
        )
        .await;
    assert_eq!(cancel.status, 202, "{:?}", cancel.body);
    app.wait_for_job(&id, |job| job["status"] == "cancelled")
        .await;
    assert!(!path.exists(), "the file is removed");
}
