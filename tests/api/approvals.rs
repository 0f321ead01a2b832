//! Approvals (SPEC §15) through the front door: a gated job waits `awaiting_approval` until an
//! admin approves it (it then runs through the hook's concurrency), rejects it, or its `timeout`
//! ends it `expired`, across a kill and a restart too.

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::helpers::{read_when_written, serve_binary, Answer, TestApp};
use crate::receiver::Receiver;

const ADMIN: [(&str, &str); 1] = [("Authorization", "Bearer admin-s3cret")];

/// A gated `async` hook `deploy` whose command appends its job id to `runs`, with `extra` lines.
fn gated(timeout: &str, extra: &str) -> String {
    format!(
        r#"
server: {{admin_token: "admin-s3cret"}}
hooks:
  - id: deploy
    signature: none
    dedupe_key: '{{{{ payload.id }}}}'
    run:
      shell: 'echo "$HOOK_JOB_ID" >> runs'
      workdir: $DIR
    response: {{mode: async}}
    approval: {{timeout: {timeout}}}
{extra}"#
    )
}

async fn decide(app: &TestApp, id: &str, decision: &str, headers: &[(&str, &str)]) -> Answer {
    app.request(
        reqwest::Method::POST,
        &format!("/jobs/{id}/{decision}"),
        "",
        headers,
    )
    .await
}

fn job_id(answer: &Answer) -> String {
    answer.body["job_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{:?}", answer.body))
        .to_string()
}

fn runs(app: &TestApp) -> Vec<String> {
    std::fs::read_to_string(app.path("runs"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn a_gated_job_waits_until_an_admin_approves_it_then_runs_once() {
    let app = TestApp::spawn(&gated("1h", "")).await;
    let answer = app.post_hook("deploy", r#"{"id": 1}"#, &[]).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    assert_eq!(answer.body["status"], "awaiting_approval");
    assert!(
        answer.body["approval_expires_at"].is_string(),
        "{:?}",
        answer.body
    );
    let id = job_id(&answer);

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(runs(&app).is_empty(), "a waiting job does not run");
    let listed = app
        .request(
            reqwest::Method::GET,
            "/jobs?status=awaiting_approval",
            "",
            &ADMIN,
        )
        .await;
    assert_eq!(
        listed.body["jobs"][0]["job_id"],
        id.as_str(),
        "{:?}",
        listed.body
    );
    // A redelivery while it waits is a duplicate of it.
    let again = app.post_hook("deploy", r#"{"id": 1}"#, &[]).await;
    assert_eq!(
        (again.status, again.body["status"].as_str()),
        (200, Some("duplicate"))
    );

    let approved = decide(&app, &id, "approve", &ADMIN).await;
    assert_eq!(approved.status, 200, "{:?}", approved.body);
    assert!(
        ["queued", "running", "succeeded"].contains(&approved.body["status"].as_str().unwrap()),
        "{:?}",
        approved.body
    );
    app.wait_for_job(&id, |job| job["status"] == "succeeded")
        .await;
    assert_eq!(runs(&app), [id.as_str()]);

    let twice = decide(&app, &id, "approve", &ADMIN).await;
    assert_eq!(
        (twice.status, twice.body["error"].as_str()),
        (409, Some("not_awaiting_approval")),
        "{:?}",
        twice.body
    );
    let late_reject = decide(&app, &id, "reject", &ADMIN).await;
    assert_eq!(late_reject.status, 409, "{:?}", late_reject.body);
}

#[tokio::test]
async fn a_rejected_or_cancelled_job_never_runs_and_gives_its_key_back() {
    let app = TestApp::spawn(&gated("1h", "")).await;
    let first = job_id(&app.post_hook("deploy", r#"{"id": 7}"#, &[]).await);
    let rejected = decide(&app, &first, "reject", &ADMIN).await;
    assert_eq!(rejected.status, 200, "{:?}", rejected.body);
    assert_eq!(rejected.body["status"], "rejected");
    assert_eq!(app.get_job(&first).await.body["status"], "rejected");

    // The same delivery again is a new job: a rejected one does not hold its key.
    let second = app.post_hook("deploy", r#"{"id": 7}"#, &[]).await;
    assert_eq!(second.status, 202, "{:?}", second.body);
    let second = job_id(&second);
    assert_ne!(second, first);
    let cancelled = app
        .request(
            reqwest::Method::POST,
            &format!("/jobs/{second}/cancel"),
            "",
            &ADMIN,
        )
        .await;
    assert_eq!(cancelled.status, 202, "{:?}", cancelled.body);
    assert_eq!(app.get_job(&second).await.body["status"], "cancelled");
    let approve_cancelled = decide(&app, &second, "approve", &ADMIN).await;
    assert_eq!(approve_cancelled.status, 409);

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(runs(&app).is_empty(), "{:?}", runs(&app));
}

#[tokio::test]
async fn approving_takes_the_admin_token_and_a_job_of_a_gated_hook() {
    let app = TestApp::spawn(&gated(
        "1h",
        "  - id: plain\n    signature: none\n    run: {shell: 'sleep 5', workdir: $DIR}\n    response: {mode: async}\n",
    ))
    .await;
    let id = job_id(&app.post_hook("deploy", r#"{"id": 1}"#, &[]).await);
    for (headers, code) in [
        (&[][..], "admin_token_missing"),
        (
            &[("Authorization", "Bearer nope")][..],
            "admin_token_invalid",
        ),
    ] {
        for decision in ["approve", "reject"] {
            let answer = decide(&app, &id, decision, headers).await;
            assert_eq!(
                (answer.status, answer.body["error"].as_str()),
                (401, Some(code)),
                "{decision}"
            );
        }
    }
    assert_eq!(app.get_job(&id).await.body["status"], "awaiting_approval");
    let unknown = decide(&app, "0123456789abcdef0123456789abcdef", "approve", &ADMIN).await;
    assert_eq!(unknown.status, 404, "{:?}", unknown.body);
    let plain = job_id(&app.post_hook("plain", "", &[]).await);
    let not_gated = decide(&app, &plain, "approve", &ADMIN).await;
    assert_eq!(
        (not_gated.status, not_gated.body["error"].as_str()),
        (409, Some("not_awaiting_approval"))
    );
    let get = app
        .request(
            reqwest::Method::GET,
            &format!("/jobs/{id}/approve"),
            "",
            &ADMIN,
        )
        .await;
    assert_eq!(get.status, 405);
}

#[tokio::test]
async fn an_approval_enters_the_hooks_queue_then_and_a_full_queue_keeps_the_job_waiting() {
    let app = TestApp::spawn(
        r#"
server: {admin_token: "admin-s3cret"}
hooks:
  - id: deploy
    signature: none
    concurrency: {mode: queue, queue: 0}
    run:
      shell: 'echo "$HOOK_JOB_ID" >> runs; while [ ! -e go ]; do sleep 0.05; done'
      workdir: $DIR
    response: {mode: async}
    approval: {timeout: 1h}
"#,
    )
    .await;
    let first = job_id(&app.post_hook("deploy", "", &[]).await);
    let second = job_id(&app.post_hook("deploy", "", &[]).await);
    // Both wait for approval: the queue's bound applies when a job is approved, not before.
    assert_eq!(decide(&app, &first, "approve", &ADMIN).await.status, 200);
    read_when_written(&app.path("runs")).await;
    let full = decide(&app, &second, "approve", &ADMIN).await;
    assert_eq!(
        (full.status, full.body["error"].as_str()),
        (503, Some("busy")),
        "{:?}",
        full.body
    );
    assert_eq!(full.headers["retry-after"], "5");
    assert_eq!(
        app.get_job(&second).await.body["status"],
        "awaiting_approval"
    );

    std::fs::write(app.path("go"), "").unwrap();
    app.wait_for_job(&first, |job| job["status"] == "succeeded")
        .await;
    assert_eq!(decide(&app, &second, "approve", &ADMIN).await.status, 200);
    app.wait_for_job(&second, |job| job["status"] == "succeeded")
        .await;
    assert_eq!(runs(&app), [first, second]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_wait_survives_a_kill_and_a_restart_and_expires_on_time() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}  - id: quick\n    signature: none\n    run: {{shell: 'echo \"$HOOK_JOB_ID\" >> runs', workdir: $DIR}}\n    response: {{mode: async}}\n    approval: {{timeout: 3s}}\n",
        gated("1h", "")
    )
    .replace(
        "server: {admin_token: \"admin-s3cret\"}",
        "server: {admin_token: \"admin-s3cret\", state_dir: $DIR/state}",
    )
    .replace("$DIR", dir.path().to_str().unwrap());
    let config = dir.path().join("hooks.yaml");
    std::fs::write(&config, text).unwrap();
    let (server, address) = serve_binary(&config, &[], &[], |_| {}).await;
    let client = reqwest::Client::new();
    let post = |path: String, admin: bool| {
        let mut request = client.post(format!("{address}{path}"));
        if admin {
            request = request.header("Authorization", "Bearer admin-s3cret");
        }
        request.body("{\"id\": 2}").send()
    };
    let slow: Value = post("/hooks/deploy".into(), false)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let quick: Value = post("/hooks/quick".into(), false)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (slow, quick) = (
        slow["job_id"].as_str().unwrap().to_string(),
        quick["job_id"].as_str().unwrap().to_string(),
    );
    server.signal(Signal::SIGKILL);
    drop(server);

    let (_server, address) = serve_binary(&config, &[], &[], |_| {}).await;
    let get = |id: &str| {
        let client = client.clone();
        let url = format!("{address}/jobs/{id}");
        async move {
            let job: Value = client.get(url).send().await.unwrap().json().await.unwrap();
            job
        }
    };
    assert_eq!(get(&slow).await["status"], "awaiting_approval");
    let approved = client
        .post(format!("{address}/jobs/{slow}/approve"))
        .header("Authorization", "Bearer admin-s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(approved.status(), 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (slow_job, quick_job) = (get(&slow).await, get(&quick).await);
        if slow_job["status"] == "succeeded" && quick_job["status"] == "expired" {
            assert!(quick_job["finished_at"].is_string(), "{quick_job}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{slow_job}\n{quick_job}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let runs = std::fs::read_to_string(dir.path().join("runs")).unwrap();
    assert_eq!(runs.lines().collect::<Vec<_>>(), [slow.as_str()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_notification_says_a_job_awaits_approval_and_links_to_its_page() {
    let receiver = Receiver::start(&[("204 No Content", "")]).await;
    let slack = Receiver::start(&[("200 OK", "")]).await;
    let notify = format!(
        "    notify:\n      - on: [awaiting_approval, succeeded]\n        webhook: {{url: \"{}\", secret: whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD}}\n      - on: [awaiting_approval]\n        slack: {{url: \"{}\"}}\n",
        receiver.url, slack.url
    );
    let config = gated("1h", &notify).replace(
        "server: {admin_token: \"admin-s3cret\"}",
        "server: {admin_token: \"admin-s3cret\", public_url: \"https://hooks.example.com\"}",
    );
    let app = TestApp::spawn(&config).await;
    let id = job_id(&app.post_hook("deploy", r#"{"id": 3}"#, &[]).await);
    let waiting = app
        .wait_for_job(&id, |job| {
            job["notifications"]
                .as_array()
                .is_some_and(|all| all.len() == 2 && all.iter().all(|n| n["status"] == "delivered"))
        })
        .await;
    assert_eq!(waiting["status"], "awaiting_approval", "{waiting}");
    {
        let seen = receiver.seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        let event: Value = serde_json::from_slice(&seen[0].body).unwrap();
        assert_eq!(event["type"], "job.awaiting_approval", "{event}");
        assert_eq!(event["data"]["job_id"], id.as_str());
        let text = String::from_utf8_lossy(&slack.seen.lock().unwrap()[0].body).to_string();
        assert!(
            text.contains(&format!("https://hooks.example.com/ui/jobs/{id}")),
            "{text}"
        );
        assert!(text.contains("awaiting approval"), "{text}");
    }

    assert_eq!(decide(&app, &id, "approve", &ADMIN).await.status, 200);
    let ended = app
        .wait_for_job(&id, |job| {
            job["status"] == "succeeded"
                && job["notifications"].as_array().is_some_and(|all| {
                    all.len() == 3 && all.iter().all(|n| n["status"] == "delivered")
                })
        })
        .await;
    let seen = receiver.seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "{ended}");
    let event: Value = serde_json::from_slice(&seen[1].body).unwrap();
    assert_eq!(event["type"], "job.succeeded");
    assert_ne!(
        seen[0].header("webhook-id"),
        seen[1].header("webhook-id"),
        "the wait and the end are two messages"
    );
    assert_eq!(slack.tries(), 1, "slack is told of the wait only");
}
