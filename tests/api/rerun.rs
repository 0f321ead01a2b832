//! `POST /jobs/{id}/rerun`: a new job with the command and values of an existing one.

use hookrunner::job::JobId;
use nix::sys::signal::Signal;

use crate::helpers::{eventually_status, read_when_written, serve_binary, TestApp};

const ADMIN: [(&str, &str); 1] = [("Authorization", "Bearer admin-s3cret")];

#[tokio::test]
async fn a_rerun_of_a_succeeded_job_runs_its_command_again_with_the_same_values() {
    let app = TestApp::spawn(
        r#"
server: {admin_token: "admin-s3cret"}
hooks:
  - id: deploy
    signature: none
    run:
      command: [sh, -c, 'echo "$1 $REF $(cat) ${HOOK_RERUN_OF:-first}" >> runs', sh, '{{ payload.after }}']
      env: {REF: '{{ payload.ref }}'}
      stdin: payload
      workdir: $DIR
    response: {mode: async}
"#,
    )
    .await;
    let body = r#"{"ref":"main","after":"abc123"}"#;
    let first = app.post_hook("deploy", body, &[]).await;
    assert_eq!(first.status, 202, "{:?}", first.body);
    let first = first.body["job_id"].as_str().unwrap().to_string();
    app.wait_for_job(&first, |job| job["status"] == "succeeded")
        .await;

    let answer = app.rerun_job(&first, &ADMIN).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let rerun = answer.body["job_id"].as_str().unwrap().to_string();
    assert_ne!(rerun, first, "a re-run is a new job");
    assert_eq!(answer.body["rerun_of"], first.as_str());
    assert_eq!(answer.body["hook"], "deploy");
    assert_eq!(answer.body["links"]["job"], format!("/jobs/{rerun}"));
    app.wait_for_job(&rerun, |job| job["status"] == "succeeded")
        .await;

    let runs = std::fs::read_to_string(app.path("runs")).unwrap();
    assert_eq!(
        runs.lines().collect::<Vec<_>>(),
        [
            format!("abc123 main {body} first"),
            format!("abc123 main {body} {first}"),
        ]
    );
    // The first job is as it was.
    assert_eq!(app.get_job(&first).await.body["status"], "succeeded");
}

#[tokio::test]
async fn a_rerun_of_a_queue_hook_waits_behind_the_running_job_and_a_full_queue_refuses_it() {
    let app = TestApp::spawn(
        r#"
server: {admin_token: "admin-s3cret"}
hooks:
  - id: deploy
    signature: none
    concurrency: {mode: queue, queue: 1}
    run:
      shell: 'echo "$HOOK_JOB_ID" >> runs; while [ ! -e go ]; do sleep 0.05; done'
      workdir: $DIR
    response: {mode: async}
"#,
    )
    .await;
    let running = app.post_hook("deploy", "", &[]).await;
    let running = running.body["job_id"].as_str().unwrap().to_string();
    read_when_written(&app.path("runs")).await;

    // A job that has not ended may be re-run too: the re-run is a new job in the hook's queue.
    let answer = app.rerun_job(&running, &ADMIN).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    assert_eq!(answer.body["status"], "queued");
    let rerun = answer.body["job_id"].as_str().unwrap().to_string();
    assert_eq!(app.get_job(&rerun).await.body["status"], "queued");
    let full = app.rerun_job(&running, &ADMIN).await;
    assert_eq!(
        (full.status, full.body["error"].as_str()),
        (503, Some("busy")),
        "{:?}",
        full.body
    );
    assert_eq!(full.headers["retry-after"], "5");

    std::fs::write(app.path("go"), "").unwrap();
    app.wait_for_job(&rerun, |job| job["status"] == "succeeded")
        .await;
    let runs = std::fs::read_to_string(app.path("runs")).unwrap();
    assert_eq!(runs.lines().collect::<Vec<_>>(), [&running, &rerun]);
}

#[tokio::test]
async fn a_rerun_needs_the_admin_token_and_a_job_whose_command_was_kept() {
    let config = r#"
hooks:
  - id: deploy
    signature: none
    run: {shell: 'true', workdir: $DIR}
    response: {mode: async}
  - id: check
    signature: none
    run: {shell: 'true', workdir: $DIR}
    response: {mode: wait}
"#;
    let off = TestApp::spawn(config).await;
    let job = off.post_hook("deploy", "", &[]).await;
    let job = job.body["job_id"].as_str().unwrap().to_string();
    let answer = off.rerun_job(&job, &ADMIN).await;
    assert_eq!(
        (answer.status, answer.body["error"].as_str()),
        (403, Some("admin_disabled"))
    );

    let app = TestApp::spawn(&format!(
        "server: {{admin_token: \"admin-s3cret\"}}\n{config}"
    ))
    .await;
    let job = app.post_hook("deploy", "", &[]).await;
    let job = job.body["job_id"].as_str().unwrap().to_string();
    let missing = app.rerun_job(&job, &[]).await;
    assert_eq!(
        (missing.status, missing.body["error"].as_str()),
        (401, Some("admin_token_missing"))
    );
    let wrong = app
        .rerun_job(&job, &[("Authorization", "Bearer admin-wrong")])
        .await;
    assert_eq!(
        (wrong.status, wrong.body["error"].as_str()),
        (401, Some("admin_token_invalid"))
    );
    let unknown = app.rerun_job(JobId::generate().as_str(), &ADMIN).await;
    assert_eq!(
        (unknown.status, unknown.body["error"].as_str()),
        (404, Some("job_not_found"))
    );
    let get = app
        .request(
            reqwest::Method::GET,
            &format!("/jobs/{job}/rerun"),
            "",
            &ADMIN,
        )
        .await;
    assert_eq!(
        (get.status, get.headers["allow"].to_str().unwrap()),
        (405, "POST")
    );

    // A `wait` job's command is not kept, so there is nothing to run again.
    let waited = app.post_hook("check", "", &[]).await;
    assert_eq!(waited.status, 200, "{:?}", waited.body);
    let waited = waited.body["job_id"].as_str().unwrap().to_string();
    let answer = app.rerun_job(&waited, &ADMIN).await;
    assert_eq!(
        (answer.status, answer.body["error"].as_str()),
        (409, Some("command_not_kept"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_whose_hook_left_the_config_cannot_be_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hooks.yaml");
    let write = |hooks: &str| {
        let text = format!(
            "server: {{admin_token: \"admin-s3cret\", state_dir: \"$DIR/state\"}}\nhooks:\n{hooks}"
        )
        .replace("$DIR", dir.path().to_str().unwrap());
        // Written beside and renamed over, as editors do, so the reload reads all of it.
        let temporary = dir.path().join(".hooks.yaml.tmp");
        std::fs::write(&temporary, text).unwrap();
        std::fs::rename(&temporary, &file).unwrap();
    };
    let stays = "  - id: stays\n    signature: none\n    run: {command: [\"true\"]}\n";
    let goes = "  - id: goes\n    signature: none\n    run: {command: [\"true\"]}\n    response: {mode: async}\n";
    write(&format!("{stays}{goes}"));
    let (server, base) = serve_binary(&file, &[], &[], |_| {}).await;
    let client = reqwest::Client::new();
    let accepted: serde_json::Value = client
        .post(format!("{base}/hooks/goes"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let job = accepted["job_id"].as_str().unwrap().to_string();

    write(stays);
    server.signal(Signal::SIGHUP);
    eventually_status(&format!("{base}/hooks/goes"), reqwest::Method::POST, 404).await;
    let answer = client
        .post(format!("{base}/jobs/{job}/rerun"))
        .header("Authorization", "Bearer admin-s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 409);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["error"], "hook_not_found", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("`goes`"),
        "{body}"
    );
}
