//! The job body's timestamps, instance and attempts (every answer that carries one), paging
//! through `GET /jobs`, `GET /instances`, and `run_on: all` on a single instance.

use crate::helpers::TestApp;
use reqwest::Method;
use serde_json::Value;

const ADMIN: [(&str, &str); 1] = [("Authorization", "Bearer admin-s3cret")];

fn is_rfc3339_millis(value: &Value) -> bool {
    // 2026-12-02T05:34:34.123Z
    value.as_str().is_some_and(|text| {
        text.len() == 24
            && text.ends_with('Z')
            && text.as_bytes()[10] == b'T'
            && text.as_bytes()[19] == b'.'
            && humantime::parse_rfc3339(text).is_ok()
    })
}

#[tokio::test]
async fn every_job_body_has_timestamps_the_instance_and_attempts() {
    let app = TestApp::spawn(
        r#"
server: {admin_token: "admin-s3cret", instance: web-7}
hooks:
  - id: now
    signature: none
    run: {command: ["true"]}
  - id: later
    signature: none
    run: {command: ["sleep", "0.2"]}
    response: {mode: async}
"#,
    )
    .await;
    let waited = app.post_hook("now", "", &[]).await;
    assert_eq!(waited.status, 200, "{}", waited.body);
    let body = &waited.body;
    for field in ["created_at", "started_at", "finished_at"] {
        assert!(is_rfc3339_millis(&body[field]), "{field}: {body}");
    }
    assert!(body["created_at"].as_str() <= body["started_at"].as_str());
    assert!(body["started_at"].as_str() <= body["finished_at"].as_str());
    assert_eq!(body["instance"], "web-7");
    assert_eq!(
        (&body["attempt"], &body["attempts"]),
        (&1.into(), &1.into())
    );

    let accepted = app.post_hook("later", "", &[]).await;
    assert_eq!(accepted.status, 202);
    assert!(is_rfc3339_millis(&accepted.body["created_at"]));
    assert!(accepted.body["finished_at"].is_null(), "{}", accepted.body);
    let id = accepted.body["job_id"].as_str().unwrap().to_string();
    let done = app
        .wait_for_job(&id, |job| job["status"] == "succeeded")
        .await;
    assert!(is_rfc3339_millis(&done["finished_at"]), "{done}");
    assert_eq!(done["instance"], "web-7");

    let listed = app.request(Method::GET, "/jobs", "", &ADMIN).await;
    let jobs = listed.body["jobs"].as_array().unwrap();
    assert!(jobs.iter().all(|job| is_rfc3339_millis(&job["created_at"])));
    assert!(jobs.iter().all(|job| job["attempts"] == 1));
}

#[tokio::test]
async fn the_job_list_pages_with_before_and_next() {
    let app = TestApp::spawn(
        r#"
server: {admin_token: "admin-s3cret"}
hooks:
  - id: quick
    signature: none
    run: {command: ["true"]}
"#,
    )
    .await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let answer = app.post_hook("quick", "", &[]).await;
        ids.push(answer.body["job_id"].as_str().unwrap().to_string());
    }
    ids.reverse();
    let mut seen = Vec::new();
    let mut path = "/jobs?limit=2".to_string();
    loop {
        let page = app.request(Method::GET, &path, "", &ADMIN).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let jobs = page.body["jobs"].as_array().unwrap();
        assert!(jobs.len() <= 2);
        seen.extend(
            jobs.iter()
                .map(|job| job["job_id"].as_str().unwrap().to_string()),
        );
        match page.body["next"].as_str() {
            Some(next) => path = format!("/jobs?limit=2&before={next}"),
            None => break,
        }
    }
    assert_eq!(seen, ids, "every job once, newest first");
    let bad = app
        .request(Method::GET, "/jobs?before=../../etc", "", &ADMIN)
        .await;
    assert_eq!(
        (bad.status, bad.body["error"].as_str()),
        (400, Some("bad_before"))
    );
}

#[tokio::test]
async fn instances_lists_this_one_for_the_admin_only() {
    let app = TestApp::spawn(
        r#"
server: {admin_token: "admin-s3cret", instance: box-1}
hooks: []
"#,
    )
    .await;
    assert_eq!(
        app.request(Method::GET, "/instances", "", &[]).await.status,
        401
    );
    assert_eq!(
        app.request(Method::POST, "/instances", "", &ADMIN)
            .await
            .status,
        405
    );
    let answer = app.request(Method::GET, "/instances", "", &ADMIN).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["store"], "sqlite");
    let instances = answer.body["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 1);
    let me = &instances[0];
    assert_eq!((&me["name"], &me["running"]), (&"box-1".into(), &0.into()));
    assert_eq!(me["version"], env!("CARGO_PKG_VERSION"));
    assert!(is_rfc3339_millis(&me["started"]) && is_rfc3339_millis(&me["last_heartbeat"]));
}

#[tokio::test]
async fn run_on_all_with_one_instance_runs_one_job_and_lists_it() {
    let app = TestApp::spawn(
        r#"
server: {instance: only-one}
hooks:
  - id: everywhere
    signature: none
    run: {command: ["sh", "-c", "echo $HOOK_JOB_ID"]}
    run_on: all
    response: {mode: async, include_output: true}
"#,
    )
    .await;
    let answer = app.post_hook("everywhere", "", &[]).await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    let jobs = answer.body["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 1, "{}", answer.body);
    assert_eq!(jobs[0]["instance"], "only-one");
    let id = jobs[0]["job_id"].as_str().unwrap();
    let done = app
        .wait_for_job(id, |job| job["status"] == "succeeded")
        .await;
    assert_eq!(done["stdout"], format!("{id}\n"));
}
