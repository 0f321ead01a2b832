//! Notifications (SPEC §13) through the front door: a real server, a real receiver on loopback,
//! real child processes; what arrives, how it is signed, how it is retried, and what the job
//! body and the metrics say.

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::helpers::{free_port, serve_binary, TestApp};
use crate::receiver::Receiver;

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// A `wait` hook whose command prints a line and exits with `code`, and `notify` entries.
fn hook(code: u32, notify: &str) -> String {
    format!(
        "hooks:\n  - id: deploy\n    signature: none\n    run: {{shell: 'echo deploying; echo last words; exit {code}', workdir: $DIR}}\n    response: {{mode: wait}}\n    notify:\n{notify}"
    )
}

fn webhook(on: &str, url: &str, extra: &str) -> String {
    format!("      - on: [{on}]\n        backoff: 200ms\n{extra}        webhook: {{url: \"{url}\", secret: {SECRET}}}\n")
}

async fn trigger(app: &TestApp) -> String {
    let answer = app.post_hook("deploy", "{}", &[]).await;
    answer.body["job_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{:?}", answer.body))
        .to_string()
}

/// Waits until the receiver has had `count` requests.
async fn tries(receiver: &Receiver, count: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while receiver.tries() < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {count} tries arrived",
            receiver.tries()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the job's notification `index` is no longer pending, and returns it.
async fn settled(app: &TestApp, id: &str, index: usize) -> Value {
    let job = app
        .wait_for_job(id, |job| {
            job["notifications"][index]["status"]
                .as_str()
                .is_some_and(|status| status != "pending")
        })
        .await;
    job["notifications"][index].clone()
}

/// Polls a job of a server run as a process until `done` holds, failing after 20 s.
async fn poll_job(client: &reqwest::Client, url: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let job: Value = client.get(url).send().await.unwrap().json().await.unwrap();
        if done(&job) {
            return job;
        }
        assert!(std::time::Instant::now() < deadline, "{job}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn metrics(app: &TestApp) -> String {
    let answer = app.request(reqwest::Method::GET, "/metrics", "", &[]).await;
    answer.body.as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_job_is_announced_by_a_signed_webhook_retried_until_it_is_delivered() {
    let receiver = Receiver::start(&[
        ("503 Service Unavailable", ""),
        ("500 Internal Server Error", "Retry-After: 1\r\n"),
        ("200 OK", ""),
    ])
    .await;
    let notify = webhook("failed", &receiver.url, "")
        + "      - on: [succeeded]\n        command: [touch, $DIR/succeeded]\n";
    let app = TestApp::spawn(&hook(3, &notify)).await;
    let id = trigger(&app).await;
    let delivered = settled(&app, &id, 0).await;
    assert_eq!(delivered["target"], "webhook");
    assert_eq!(delivered["status"], "delivered");
    assert_eq!(delivered["attempts"], 3);
    assert_eq!(
        delivered["last_error"],
        "the target answered 500 Internal Server Error"
    );
    assert_eq!(delivered["next_attempt_at"], Value::Null);
    let job = app.get_job(&id).await.body;
    assert_eq!(
        job["notifications"].as_array().unwrap().len(),
        1,
        "the `succeeded` entry made none: {job}"
    );
    assert!(!app.path("succeeded").exists());

    let metrics = metrics(&app).await;
    for line in [
        "hookrunner_notifications_total{result=\"retried\",target=\"webhook\"} 2",
        "hookrunner_notifications_total{result=\"delivered\",target=\"webhook\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }

    let seen = receiver.seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    let message_id = format!("msg_{id}_0");
    for request in seen.iter() {
        assert_eq!(
            request.header("webhook-id"),
            message_id,
            "the same id on every try"
        );
        assert_eq!(request.header("content-type"), "application/json");
        assert_eq!(request.body, seen[0].body, "the same body on every try");
        request.verify(SECRET);
    }
    let event: Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(event["type"], "job.failed");
    assert_eq!(event["data"]["job_id"], id.as_str());
    assert_eq!(
        (&event["data"]["hook"], &event["data"]["exit_code"]),
        (&"deploy".into(), &3.into())
    );
    assert_eq!(event["timestamp"], job["finished_at"]);
    let gaps: Vec<Duration> = seen
        .windows(2)
        .map(|pair| pair[1].at - pair[0].at)
        .collect();
    assert!(gaps[0] >= Duration::from_millis(100), "backoff: {gaps:?}");
    assert!(
        gaps[1] >= Duration::from_millis(1000),
        "Retry-After: {gaps:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn slack_gets_the_end_of_the_output_and_a_command_the_job_in_a_clean_environment() {
    let slack = Receiver::start(&[("200 OK", "")]).await;
    let notify = format!(
        "      - on: [failed]\n        slack: {{url: \"{}\"}}\n      - on: [failed]\n        command: [sh, -c, 'env > $DIR/env; cat > $DIR/stdin']\n",
        slack.url
    );
    let config = format!(
        "server: {{public_url: \"https://hooks.example.com/\"}}\n{}",
        hook(3, &notify)
    );
    let app = TestApp::spawn(&config).await;
    let id = trigger(&app).await;
    assert_eq!(settled(&app, &id, 0).await["status"], "delivered");
    assert_eq!(settled(&app, &id, 1).await["status"], "delivered");

    let message: Value = serde_json::from_slice(&slack.seen.lock().unwrap()[0].body).unwrap();
    let text = message["text"].as_str().unwrap();
    assert!(
        text.starts_with("*deploy*: failed (exit code 3) after"),
        "{text}"
    );
    assert!(text.contains("deploying\nlast words"), "{text}");
    assert!(
        text.contains(&format!("<https://hooks.example.com/jobs/{id}|job {id}>")),
        "{text}"
    );

    let env = std::fs::read_to_string(app.path("env")).unwrap();
    for line in [
        format!("HOOK_JOB_ID={id}"),
        "HOOK_ID=deploy".into(),
        "HOOK_STATUS=failed".into(),
        "HOOK_EXIT_CODE=3".into(),
    ] {
        assert!(env.lines().any(|l| l == line), "{line} in\n{env}");
    }
    assert!(
        !env.contains("CARGO_"),
        "nothing of the server's environment: {env}"
    );
    let stdin: Value =
        serde_json::from_str(&std::fs::read_to_string(app.path("stdin")).unwrap()).unwrap();
    assert_eq!(
        (&stdin["job_id"], &stdin["status"]),
        (&id.as_str().into(), &"failed".into())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_410_stops_at_once_and_a_redirect_to_another_host_is_not_followed() {
    let elsewhere = Receiver::start(&[("200 OK", "")]).await;
    let location: &'static str =
        Box::leak(format!("Location: {}\r\n", elsewhere.url).into_boxed_str());
    let redirecting = Receiver::start(&[("307 Temporary Redirect", location)]).await;
    let gone = Receiver::start(&[("410 Gone", "")]).await;
    let notify = webhook("failed", &redirecting.url, "        max_age: 1s\n")
        + &webhook("failed", &gone.url, "");
    let app = TestApp::spawn(&hook(1, &notify)).await;
    let id = trigger(&app).await;

    let stopped = settled(&app, &id, 1).await;
    assert_eq!(stopped["status"], "failed");
    assert_eq!(stopped["attempts"], 1, "410 is not retried");
    assert!(
        stopped["last_error"].as_str().unwrap().contains("410 Gone"),
        "{stopped}"
    );

    let given_up = settled(&app, &id, 0).await;
    assert_eq!(given_up["status"], "failed");
    let error = given_up["last_error"].as_str().unwrap();
    assert!(
        error.contains("307 Temporary Redirect, a redirect to 127.0.0.1")
            && error.contains("given up after"),
        "{error}"
    );
    assert!(!error.contains(&elsewhere.url), "{error}");
    assert!(redirecting.tries() >= 2, "retried until max_age");
    assert_eq!(elsewhere.tries(), 0, "never sent to another host");
    let metrics = metrics(&app).await;
    assert!(
        metrics.contains("hookrunner_notifications_total{result=\"failed\",target=\"webhook\"} 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_notification_whose_receiver_is_down_is_delivered_after_a_kill_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/hooks/deploy");
    let text = format!(
        "server: {{state_dir: $DIR/state}}\n{}",
        hook(2, &webhook("failed", &url, ""))
    )
    .replace("$DIR", dir.path().to_str().unwrap());
    let config = dir.path().join("hooks.yaml");
    std::fs::write(&config, text).unwrap();
    let (server, address) = serve_binary(&config, &[], &[], |_| {}).await;
    let client = reqwest::Client::new();
    let job_url = |address: &str, id: &str| format!("{address}/jobs/{id}");
    let answer: Value = client
        .post(format!("{address}/hooks/deploy"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = answer["job_id"].as_str().unwrap().to_string();
    let job = poll_job(&client, &job_url(&address, &id), |job| {
        job["notifications"][0]["attempts"].as_u64().unwrap_or(0) >= 2
    })
    .await;
    let tried = &job["notifications"][0];
    assert_eq!(tried["status"], "pending", "{job}");
    assert!(
        tried["last_error"]
            .as_str()
            .unwrap()
            .starts_with("cannot connect to the target"),
        "{job}"
    );
    server.signal(Signal::SIGKILL);
    let log = server.log();
    drop(server);
    assert!(!log.contains("whsec_"), "{log}");

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let receiver = Receiver::on(listener, &[("204 No Content", "")]);
    let (_server, address) = serve_binary(&config, &[], &[], |_| {}).await;
    tries(&receiver, 1).await;
    let job = poll_job(&client, &job_url(&address, &id), |job| {
        job["notifications"][0]["status"] == "delivered"
    })
    .await;
    assert!(job["notifications"][0]["attempts"].as_u64().unwrap() >= 3);
    let seen = receiver.seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "delivered once");
    assert_eq!(seen[0].header("webhook-id"), format!("msg_{id}_0"));
    seen[0].verify(SECRET);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_that_never_answers_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    // Accepts connections and reads nothing, answers nothing.
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let notify = webhook("failed", &url, "        max_age: 2s\n");
    let app = TestApp::spawn(&hook(1, &notify)).await;
    let id = trigger(&app).await;
    let started = std::time::Instant::now();
    let given_up = settled(&app, &id, 0).await;
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        (&given_up["status"], &given_up["attempts"]),
        (&"failed".into(), &1.into())
    );
    assert!(
        given_up["last_error"]
            .as_str()
            .unwrap()
            .starts_with("the target did not answer within 10s"),
        "{given_up}"
    );
}
