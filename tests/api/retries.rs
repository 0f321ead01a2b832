//! Job retries (SPEC §12) through the front door: real commands that fail and then succeed, the
//! waits between their runs, the log of every attempt, cancel and supersession of a waiting
//! retry, and a retry that waits through a `kill -9` of the real binary.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::helpers::{serve_binary, TestApp};

/// A command that counts its runs in `count`, writes when each started (unix ms) to `starts`,
/// and fails until its run number reaches `$1` (a hook's `SUCCEED_AT`).
const COUNTING: &str = r#"n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; date +%s%3N >> starts; echo "run $n sees attempt $HOOK_ATTEMPT"; [ $n -ge $SUCCEED_AT ]"#;

fn counting_hook(id: &str, succeed_at: u32, retry: &str, extra: &str) -> String {
    format!(
        r#"
  - id: {id}
    signature: none
    run:
      shell: '{shell}'
      workdir: $DIR
      env: {{SUCCEED_AT: "{succeed_at}"}}
    response: {{mode: async}}
    retry: {retry}
{extra}"#,
        shell = COUNTING.replace('\'', "''"),
    )
}

fn job_id(answer: &Value) -> String {
    answer["job_id"].as_str().expect("a job id").to_string()
}

fn starts(dir: &Path) -> Vec<i64> {
    std::fs::read_to_string(dir.join("starts"))
        .unwrap_or_default()
        .lines()
        .map(|line| line.trim().parse().unwrap())
        .collect()
}

fn runs(dir: &Path) -> u32 {
    std::fs::read_to_string(dir.join("count")).map_or(0, |text| text.trim().parse().unwrap())
}

fn ms_of(rfc3339: &Value) -> i64 {
    let text = rfc3339.as_str().expect("a time");
    let at = humantime::parse_rfc3339(text).unwrap();
    at.duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Waits until the job is queued for its attempt `attempt`, and returns its body.
/// The JSON body of the answer to `request`.
async fn json(request: reqwest::RequestBuilder) -> Value {
    request.send().await.unwrap().json().await.unwrap()
}

async fn waiting_retry(app: &TestApp, id: &str, attempt: u32) -> Value {
    app.wait_for_job(id, |job| {
        job["status"] == "queued" && job["attempt"] == attempt && !job["next_attempt_at"].is_null()
    })
    .await
}

#[tokio::test]
async fn a_command_that_fails_twice_then_succeeds_ends_succeeded_on_its_third_attempt() {
    let hook = counting_hook(
        "flaky",
        3,
        "{attempts: 5, backoff: 200ms, max_delay: 10s}",
        "",
    );
    let app = TestApp::spawn(&format!("hooks:{hook}")).await;
    let answer = app.post_hook("flaky", "", &[]).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    assert_eq!(answer.body["attempts"], 5);
    let id = job_id(&answer.body);
    let done = app
        .wait_for_job(&id, |job| job["status"] == "succeeded")
        .await;
    assert_eq!(
        (&done["attempt"], &done["attempts"]),
        (&3.into(), &5.into())
    );
    assert!(done["next_attempt_at"].is_null(), "{done}");
    assert_eq!(runs(app.dir.path()), 3);

    // Equal jitter: the wait after the first failure is at least half of `backoff`, after the
    // second at least half of twice `backoff`. Lower bounds only.
    let starts = starts(app.dir.path());
    assert!(starts[1] - starts[0] >= 100, "{starts:?}");
    assert!(starts[2] - starts[1] >= 200, "{starts:?}");

    let log = app
        .request(reqwest::Method::GET, &format!("/jobs/{id}/log"), "", &[])
        .await;
    assert_eq!(
        log.body,
        "--- attempt 1 ---\nrun 1 sees attempt 1\n\
         --- attempt 2 ---\nrun 2 sees attempt 2\n\
         --- attempt 3 ---\nrun 3 sees attempt 3\n"
    );
    // Two runs were retried; the job counts once, as it ended.
    let metrics = app.request(reqwest::Method::GET, "/metrics", "", &[]).await;
    let metrics = metrics.body.as_str().unwrap();
    for line in [
        "hookrunner_job_retries_total{hook=\"flaky\",status=\"failed\"} 2",
        "hookrunner_jobs_total{hook=\"flaky\",status=\"succeeded\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in:\n{metrics}");
    }
    assert!(!metrics.contains("hookrunner_jobs_total{hook=\"flaky\",status=\"failed\"}"));
}

#[tokio::test]
async fn a_job_whose_attempts_are_exhausted_ends_failed_on_its_last_attempt() {
    let hook = counting_hook("broken", 99, "{attempts: 2, backoff: 50ms}", "");
    let app = TestApp::spawn(&format!("hooks:{hook}")).await;
    let id = job_id(&app.post_hook("broken", "", &[]).await.body);
    let done = app.wait_for_job(&id, |job| job["status"] == "failed").await;
    assert_eq!(
        (&done["attempt"], &done["attempts"]),
        (&2.into(), &2.into())
    );
    assert_eq!(done["exit_code"], 1);
    assert!(done["next_attempt_at"].is_null(), "{done}");
    assert_eq!(runs(app.dir.path()), 2);
}

#[tokio::test]
async fn a_hook_without_retry_runs_once_and_its_log_has_no_marker() {
    let app = TestApp::spawn(
        r#"
hooks:
  - id: once
    signature: none
    run: {shell: 'echo "attempt $HOOK_ATTEMPT"; exit 1'}
    response: {mode: async}
"#,
    )
    .await;
    let id = job_id(&app.post_hook("once", "", &[]).await.body);
    let done = app.wait_for_job(&id, |job| job["status"] == "failed").await;
    assert_eq!(
        (&done["attempt"], &done["attempts"]),
        (&1.into(), &1.into())
    );
    let log = app
        .request(reqwest::Method::GET, &format!("/jobs/{id}/log"), "", &[])
        .await;
    assert_eq!(log.body, "attempt 1\n");
}

#[tokio::test]
async fn cancel_ends_a_waiting_retry() {
    let hook = counting_hook("flaky", 2, "{attempts: 3, backoff: 5m}", "");
    let app = TestApp::spawn(&format!("server: {{admin_token: adm1n}}\nhooks:{hook}")).await;
    let id = job_id(&app.post_hook("flaky", "", &[]).await.body);
    let waiting = waiting_retry(&app, &id, 2).await;
    assert!(ms_of(&waiting["next_attempt_at"]) > ms_of(&waiting["created_at"]) + 1_000);
    let cancel = app
        .request(
            reqwest::Method::POST,
            &format!("/jobs/{id}/cancel"),
            "",
            &[("Authorization", "Bearer adm1n")],
        )
        .await;
    assert_eq!(
        (cancel.status, &cancel.body["result"]),
        (202, &"dequeued".into()),
        "{:?}",
        cancel.body
    );
    let done = app
        .wait_for_job(&id, |job| job["status"] == "cancelled")
        .await;
    assert_eq!(done["attempt"], 2);
    assert_eq!(runs(app.dir.path()), 1);
}

#[tokio::test]
async fn a_newer_trigger_supersedes_a_waiting_retry_under_latest() {
    let hook = counting_hook("deploy", 2, "{attempts: 3, backoff: 5m}", "");
    let hook = hook.replace("    retry:", "    concurrency: latest\n    retry:");
    let app = TestApp::spawn(&format!("hooks:{hook}")).await;
    let first = job_id(&app.post_hook("deploy", "", &[]).await.body);
    waiting_retry(&app, &first, 2).await;
    let second = job_id(&app.post_hook("deploy", "", &[]).await.body);
    let superseded = app
        .wait_for_job(&first, |job| job["status"] == "superseded")
        .await;
    assert_eq!(superseded["attempt"], 2);
    let done = app
        .wait_for_job(&second, |job| job["status"] == "succeeded")
        .await;
    assert_eq!(done["attempt"], 1);
    assert_eq!(runs(app.dir.path()), 2);
}

#[tokio::test]
async fn a_retry_waits_behind_the_jobs_already_in_its_queue() {
    // The first run fails and is retried at once (`backoff` is short); a job admitted while it
    // ran is already waiting, so it goes first.
    let app = TestApp::spawn(
        r#"
hooks:
  - id: q
    signature: none
    concurrency: {mode: queue, queue: 5}
    run:
      shell: 'echo "$NAME" >> order; while [ "$NAME" = first ] && [ ! -e go ]; do sleep 0.02; done; [ -e order.ok ] || [ "$NAME" != first ] || { touch order.ok; exit 1; }'
      workdir: $DIR
      env: {NAME: '{{ payload.name }}'}
    response: {mode: async}
    retry: {attempts: 2, backoff: 1ms}
"#,
    )
    .await;
    let json = [("Content-Type", "application/json")];
    let first = job_id(&app.post_hook("q", r#"{"name":"first"}"#, &json).await.body);
    crate::helpers::read_when_written(&app.path("order")).await;
    let second = job_id(&app.post_hook("q", r#"{"name":"second"}"#, &json).await.body);
    std::fs::write(app.path("go"), "").unwrap();
    app.wait_for_job(&first, |job| job["status"] == "succeeded")
        .await;
    app.wait_for_job(&second, |job| job["status"] == "succeeded")
        .await;
    let order = std::fs::read_to_string(app.path("order")).unwrap();
    assert_eq!(order, "first\nsecond\nfirst\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_waiting_retry_survives_a_kill_of_the_server_and_runs_once_not_early() {
    let dir = tempfile::tempdir().unwrap();
    let hook = counting_hook("flaky", 2, "{attempts: 3, backoff: 3s}", "");
    let config = dir.path().join("hooks.yaml");
    let text = format!("server: {{state_dir: $DIR/state}}\nhooks:{hook}")
        .replace("$DIR", dir.path().to_str().unwrap());
    std::fs::write(&config, text).unwrap();
    let (server, address) = serve_binary(&config, &[], &[], |_| {}).await;
    let client = reqwest::Client::new();
    let answer = json(client.post(format!("{address}/hooks/flaky"))).await;
    let id = job_id(&answer);
    let job_url = |address: &str| format!("{address}/jobs/{id}");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let waiting = loop {
        let job = json(client.get(job_url(&address))).await;
        if job["status"] == "queued" && job["attempt"] == 2 {
            break job;
        }
        assert!(std::time::Instant::now() < deadline, "{job}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let due = ms_of(&waiting["next_attempt_at"]);
    server.signal(Signal::SIGKILL);
    drop(server);

    let (_server, address) = serve_binary(&config, &[], &[], |_| {}).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let done = loop {
        let job = json(client.get(job_url(&address))).await;
        match job["status"].as_str() {
            Some("succeeded") => break job,
            Some("queued") => {
                assert_eq!(ms_of(&job["next_attempt_at"]), due, "the schedule is kept")
            }
            _ => assert_eq!(job["status"], "running", "{job}"),
        }
        assert!(std::time::Instant::now() < deadline, "{job}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(done["attempt"], 2);
    assert_eq!(runs(dir.path()), 2, "it ran once after the restart");
    let starts = starts(dir.path());
    assert!(
        starts[1] >= due,
        "ran at {} before it was due at {due}",
        starts[1]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_a_crash_cut_short_is_retried_only_when_its_hook_retries_interrupted() {
    interrupted_runs_are_retried_only_when_listed(Signal::SIGKILL).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_a_shutdown_interrupted_is_retried_only_when_its_hook_retries_interrupted() {
    interrupted_runs_are_retried_only_when_listed(Signal::SIGTERM).await;
}

/// Two hooks whose first run never ends by itself, one retrying `interrupted`: the server is
/// stopped by `signal` while both run, and started again.
async fn interrupted_runs_are_retried_only_when_listed(signal: Signal) {
    let dir = tempfile::tempdir().unwrap();
    let hook = |id: &str, on: &str| {
        format!(
            r#"
  - id: {id}
    signature: none
    run:
      shell: 'if [ "$HOOK_ATTEMPT" = 1 ]; then echo $$ > {id}.pid; exec sleep 60; fi'
      workdir: $DIR
    response: {{mode: async}}
    retry: {{attempts: 2, backoff: 100ms, on: [{on}]}}"#
        )
    };
    let text = format!(
        "server: {{state_dir: $DIR/state, shutdown_grace: 100ms}}\nhooks:{}{}\n",
        hook("kept", "failed, interrupted"),
        hook("lost", "failed")
    )
    .replace("$DIR", dir.path().to_str().unwrap());
    let config = dir.path().join("hooks.yaml");
    std::fs::write(&config, text).unwrap();
    let (server, address) = serve_binary(&config, &[], &[], |_| {}).await;
    let client = reqwest::Client::new();
    let mut ids: Vec<String> = Vec::new();
    for hook in ["kept", "lost"] {
        let answer = json(client.post(format!("{address}/hooks/{hook}"))).await;
        ids.push(job_id(&answer));
    }
    let mut pids = Vec::new();
    for hook in ["kept", "lost"] {
        let pid =
            crate::helpers::read_line_when_written(&dir.path().join(format!("{hook}.pid"))).await;
        pids.push(pid.trim().parse::<i32>().unwrap());
    }
    let mut server = server;
    server.signal(signal);
    if signal == Signal::SIGTERM {
        assert_eq!(server.exit_code().await, Some(0), "{}", server.log());
    }
    drop(server);
    // After a crash, the commands (each leading its own process group) outlive the server.
    for pid in pids {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
    }

    let (_server, address) = serve_binary(&config, &[], &[], |_| {}).await;
    let until = |id: String, status: &'static str| {
        let client = client.clone();
        let url = format!("{address}/jobs/{id}");
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            loop {
                let job = json(client.get(&url)).await;
                if job["status"] == status {
                    return job;
                }
                assert!(std::time::Instant::now() < deadline, "{job}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let kept = until(ids[0].clone(), "succeeded").await;
    assert_eq!(kept["attempt"], 2);
    let lost = until(ids[1].clone(), "interrupted").await;
    assert_eq!(lost["attempt"], 1);
}

#[tokio::test]
async fn following_the_log_of_a_job_goes_on_through_its_next_attempt() {
    let app = TestApp::spawn(
        r#"
hooks:
  - id: flaky
    signature: none
    run:
      shell: 'echo "run $HOOK_ATTEMPT"; [ "$HOOK_ATTEMPT" = 2 ] && exit 0; touch started; while [ ! -e go ]; do sleep 0.02; done; exit 1'
      workdir: $DIR
    response: {mode: async}
    retry: {attempts: 2, backoff: 100ms}
"#,
    )
    .await;
    let id = job_id(&app.post_hook("flaky", "", &[]).await.body);
    crate::helpers::read_when_written(&app.path("started")).await;
    let follow = app
        .client
        .get(format!("{}/jobs/{id}/log?follow=1", app.address))
        .send()
        .await
        .unwrap();
    std::fs::write(app.path("go"), "").unwrap();
    let followed = tokio::time::timeout(Duration::from_secs(20), follow.text())
        .await
        .expect("the follow ends with the job")
        .unwrap();
    assert_eq!(
        followed,
        "--- attempt 1 ---\nrun 1\n--- attempt 2 ---\nrun 2\n"
    );
    let done = app.get_job(&id).await.body;
    assert_eq!(
        (&done["status"], &done["attempt"]),
        (&"succeeded".into(), &2.into())
    );
}
