//! The job engine through HTTP: async and stream answers, the job log, concurrency modes,
//! capacity, duplicates, and the admin endpoints.

use std::time::Duration;

use crate::helpers::{github_signature, read_when_written, TestApp};

/// Waits until a file exists, then returns; fails after a deadline.
async fn until_exists(path: &std::path::Path) {
    read_when_written(path).await;
}

#[tokio::test]
async fn an_async_trigger_answers_before_the_command_ends_and_its_log_can_be_followed() {
    let app = TestApp::spawn(
        r#"
hooks:
  - id: deploy
    signature: none
    run:
      shell: 'echo building; touch started; while [ ! -e go ]; do sleep 0.05; done; echo deployed; echo warning >&2'
      workdir: $DIR
    response: {mode: async}
"#,
    )
    .await;
    let answer = app.post_hook("deploy", "", &[]).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    // The command waits for `go`, so the answer came before it could end.
    let status = answer.body["status"].as_str().unwrap();
    assert!(status == "queued" || status == "running", "{status}");
    let job_id = answer.body["job_id"].as_str().unwrap().to_string();
    until_exists(&app.path("started")).await;

    // Follow the log live: it must deliver what was written so far, then the rest, then end.
    let follow = app
        .client
        .get(format!("{}/jobs/{job_id}/log?follow=1", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(follow.status(), 200);
    assert_eq!(follow.headers()["x-accel-buffering"], "no");
    let job = app.get_job(&job_id).await;
    assert_eq!(job.body["status"], "running");
    std::fs::write(app.path("go"), "").unwrap();
    let followed = tokio::time::timeout(Duration::from_secs(10), follow.text())
        .await
        .expect("the follow ends with the job")
        .unwrap();
    assert_eq!(followed, "building\ndeployed\nwarning\n");

    let done = app
        .wait_for_job(&job_id, |job| job["status"] == "succeeded")
        .await;
    assert_eq!(done["exit_code"], 0);
    let log = app
        .request(
            reqwest::Method::GET,
            &format!("/jobs/{job_id}/log"),
            "",
            &[],
        )
        .await;
    assert_eq!(log.body, "building\ndeployed\nwarning\n");
}

#[tokio::test]
async fn latest_runs_the_first_and_the_last_of_a_burst_and_supersedes_the_rest() {
    let app = TestApp::spawn(
        r#"
hooks:
  - id: deploy
    signature: none
    concurrency: latest
    run:
      shell: 'echo "$HOOK_JOB_ID" >> runs; while [ ! -e go ]; do sleep 0.05; done'
      workdir: $DIR
    response: {mode: async}
"#,
    )
    .await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let answer = app.post_hook("deploy", "", &[]).await;
        assert_eq!(answer.status, 202);
        ids.push(answer.body["job_id"].as_str().unwrap().to_string());
        if ids.len() == 1 {
            until_exists(&app.path("runs")).await;
        }
    }
    std::fs::write(app.path("go"), "").unwrap();
    let last = app
        .wait_for_job(&ids[4], |job| job["status"] == "succeeded")
        .await;
    assert_eq!(last["exit_code"], 0);
    assert_eq!(app.get_job(&ids[0]).await.body["status"], "succeeded");
    for id in &ids[1..4] {
        assert_eq!(app.get_job(id).await.body["status"], "superseded", "{id}");
    }
    let runs = std::fs::read_to_string(app.path("runs")).unwrap();
    assert_eq!(
        runs.lines().collect::<Vec<_>>(),
        [ids[0].as_str(), ids[4].as_str()]
    );
}

#[tokio::test]
async fn replace_cancels_the_running_job_for_the_new_one() {
    let app = TestApp::spawn(
        r#"
hooks:
  - id: preview
    signature: none
    concurrency: replace
    run:
      shell: 'touch "$HOOK_JOB_ID.started"; sleep 30'
      workdir: $DIR
      kill_after: 1s
    response: {mode: async}
"#,
    )
    .await;
    let first = app.post_hook("preview", "", &[]).await.body["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    until_exists(&app.path(&format!("{first}.started"))).await;
    let second = app.post_hook("preview", "", &[]).await.body["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let cancelled = app
        .wait_for_job(&first, |job| job["status"] != "running")
        .await;
    assert_eq!(cancelled["status"], "cancelled");
    until_exists(&app.path(&format!("{second}.started"))).await;
    assert_eq!(app.get_job(&second).await.body["status"], "running");
}

#[tokio::test]
async fn a_full_queue_answers_503_and_every_accepted_job_still_runs() {
    let app = TestApp::spawn(
        r#"
hooks:
  - id: build
    signature: none
    concurrency: {mode: queue, queue: 3}
    run:
      shell: 'while [ ! -e go ]; do sleep 0.05; done; echo "$HOOK_JOB_ID" >> done'
      workdir: $DIR
    response: {mode: async}
"#,
    )
    .await;
    // One after the other, so the order of the answers is the order of admission.
    let mut answers = Vec::new();
    for _ in 0..10 {
        answers.push(app.post_hook("build", "", &[]).await);
    }
    let accepted: Vec<String> = answers
        .iter()
        .filter(|answer| answer.status == 202)
        .map(|answer| answer.body["job_id"].as_str().unwrap().to_string())
        .collect();
    let refused: Vec<_> = answers
        .iter()
        .filter(|answer| answer.status == 503)
        .collect();
    assert_eq!(accepted.len() + refused.len(), 10);
    assert!(
        (3..=4).contains(&accepted.len()),
        "one running and three waiting at most: {}",
        accepted.len()
    );
    for answer in &refused {
        assert_eq!(answer.headers["retry-after"], "5");
        assert_eq!(answer.body["error"], "busy");
    }
    std::fs::write(app.path("go"), "").unwrap();
    for id in &accepted {
        app.wait_for_job(id, |job| job["status"] == "succeeded")
            .await;
    }
    let done = std::fs::read_to_string(app.path("done")).unwrap();
    assert_eq!(
        done.lines().collect::<Vec<_>>(),
        accepted.iter().map(String::as_str).collect::<Vec<_>>(),
        "FIFO"
    );
}

#[tokio::test]
async fn a_redelivery_runs_nothing_unless_the_first_attempt_failed() {
    let app = TestApp::spawn(
        r#"
hooks:
  - id: github
    signature: {github: {secret: s}}
    run:
      shell: 'echo "$HOOK_JOB_ID" >> runs; [ ! -e fail ]'
      workdir: $DIR
"#,
    )
    .await;
    let body = r#"{"ref": "refs/heads/main"}"#;
    let signature = github_signature("s", body.as_bytes());
    let deliver = |delivery: &'static str| {
        let signature = signature.clone();
        let app = &app;
        async move {
            app.post_hook(
                "github",
                body,
                &[
                    ("X-Hub-Signature-256", &signature),
                    ("X-GitHub-Delivery", delivery),
                ],
            )
            .await
        }
    };
    let first = deliver("d-1").await;
    assert_eq!(first.status, 200);
    let again = deliver("d-1").await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["status"], "duplicate");
    assert_eq!(again.body["job_id"], first.body["job_id"]);
    assert_eq!(
        std::fs::read_to_string(app.path("runs"))
            .unwrap()
            .lines()
            .count(),
        1
    );

    std::fs::write(app.path("fail"), "").unwrap();
    assert_eq!(deliver("d-2").await.status, 500);
    std::fs::remove_file(app.path("fail")).unwrap();
    let retried = deliver("d-2").await;
    assert_eq!(
        retried.status, 200,
        "a redelivery after a failure runs again: {:?}",
        retried.body
    );
    assert_eq!(
        std::fs::read_to_string(app.path("runs"))
            .unwrap()
            .lines()
            .count(),
        3
    );
}

#[tokio::test]
async fn stream_mode_sends_output_as_it_comes_and_ends_with_the_exit_status() {
    let app = TestApp::spawn(
        r#"
hooks:
  - id: tail
    signature: none
    run: {shell: 'echo one; echo two >&2; exit 3'}
    response: {mode: stream}
"#,
    )
    .await;
    let text = app
        .client
        .post(format!("{}/hooks/tail", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(text.status(), 200);
    assert_eq!(text.headers()["x-accel-buffering"], "no");
    assert!(text.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let body = text.text().await.unwrap();
    assert!(body.contains("one\n") && body.contains("two\n"), "{body}");
    assert!(body.ends_with("\nexit status 3\n"), "{body}");

    let events = app
        .client
        .post(format!("{}/hooks/tail", app.address))
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let body = events.text().await.unwrap();
    assert!(body.contains("event: stdout\ndata: one\n\n"), "{body}");
    assert!(body.contains("event: stderr\ndata: two\n\n"), "{body}");
    assert!(body.contains("event: exit\ndata: {"), "{body}");
    assert!(body.contains("\"exit_code\":3"), "{body}");
}

#[tokio::test]
async fn listing_and_cancel_need_the_admin_token() {
    let app = TestApp::spawn(
        r#"
server: {admin_token: "admin-s3cret"}
hooks:
  - id: slow
    signature: none
    run: {shell: 'sleep 30', kill_after: 1s}
    response: {mode: async}
"#,
    )
    .await;
    let running = app.post_hook("slow", "", &[]).await.body["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let queued = app.post_hook("slow", "", &[]).await.body["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;
    for (method, path) in [
        (get.clone(), "/jobs".to_string()),
        (post.clone(), format!("/jobs/{queued}/cancel")),
    ] {
        let missing = app.request(method.clone(), &path, "", &[]).await;
        assert_eq!(
            (missing.status, missing.body["error"].as_str()),
            (401, Some("admin_token_missing")),
            "{path}"
        );
        let wrong = app
            .request(
                method.clone(),
                &path,
                "",
                &[("Authorization", "Bearer nope")],
            )
            .await;
        assert_eq!(
            (wrong.status, wrong.body["error"].as_str()),
            (401, Some("admin_token_invalid")),
            "{path}"
        );
    }
    let admin = [("Authorization", "Bearer admin-s3cret")];
    let list = app
        .request(get.clone(), "/jobs?hook=slow&limit=10", "", &admin)
        .await;
    assert_eq!(list.status, 200);
    let listed: Vec<&str> = list.body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["job_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [queued.as_str(), running.as_str()], "newest first");
    let only_queued = app
        .request(get.clone(), "/jobs?status=queued", "", &admin)
        .await;
    assert_eq!(only_queued.body["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(
        app.request(get, "/jobs?status=nonsense", "", &admin)
            .await
            .status,
        400
    );

    let dequeued = app
        .request(post.clone(), &format!("/jobs/{queued}/cancel"), "", &admin)
        .await;
    assert_eq!(
        (dequeued.status, dequeued.body["result"].as_str()),
        (202, Some("dequeued"))
    );
    assert_eq!(app.get_job(&queued).await.body["status"], "cancelled");
    let signalled = app
        .request(post.clone(), &format!("/jobs/{running}/cancel"), "", &admin)
        .await;
    assert_eq!(signalled.body["result"], "signalled");
    app.wait_for_job(&running, |job| job["status"] == "cancelled")
        .await;
    let again = app
        .request(post, &format!("/jobs/{running}/cancel"), "", &admin)
        .await;
    assert_eq!(again.status, 409);
    assert_eq!(
        app.request(reqwest::Method::GET, "/readyz", "", &[])
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn without_an_admin_token_the_admin_endpoints_are_off() {
    let app = TestApp::spawn("hooks: []\n").await;
    let answer = app
        .request(
            reqwest::Method::GET,
            "/jobs",
            "",
            &[("Authorization", "Bearer x")],
        )
        .await;
    assert_eq!(
        (answer.status, answer.body["error"].as_str()),
        (403, Some("admin_disabled"))
    );
}
