//! Rate limits (SPEC §17) through the front door: 429 with `Retry-After` before the body is read
//! or the signature checked, per client address (as trusted proxies give it) and per hook; counts
//! that survive a reload; refusals in `/metrics` and summarised in the log.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use reqwest::Method;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::helpers::{eventually_logged, github_signature, serve_binary, Answer, TestApp};

const SECRET: &str = "It's a Secret to Everybody";
const ADMIN: [(&str, &str); 1] = [("Authorization", "Bearer admin-s3cret")];

/// An open hook that runs nothing of note, under `server` as the `server:` section and with
/// `hook` added to the hook.
fn open_hook(server: &str, hook: &str) -> String {
    format!(
        "server: {{{server}}}\nhooks:\n  - id: open\n    signature: none\n    {hook}\n    run: {{command: [\"true\"]}}\n  - id: other\n    signature: none\n    run: {{command: [\"true\"]}}\n"
    )
}

async fn post_from(app: &TestApp, hook: &str, client: &str) -> Answer {
    app.post_hook(hook, "", &[("X-Forwarded-For", client)])
        .await
}

/// The `Retry-After` of a 429, checked to be whole seconds, at least one.
fn retry_after(answer: &Answer) -> u64 {
    assert_eq!(answer.status, 429, "{:?}", answer.body);
    assert_eq!(answer.body["error"], "rate_limited", "{:?}", answer.body);
    let value = answer.headers["retry-after"].to_str().unwrap();
    let seconds: u64 = value.parse().expect("whole seconds");
    assert!(seconds >= 1, "{value}");
    seconds
}

#[tokio::test]
async fn a_burst_is_taken_then_the_client_gets_429_with_retry_after() {
    let app = TestApp::spawn(&open_hook("rate_limit: {per_ip: 1/h, burst: 3}", "")).await;
    for _ in 0..3 {
        assert_eq!(app.post_hook("open", "", &[]).await.status, 200);
    }
    let refused = app.post_hook("open", "", &[]).await;
    let seconds = retry_after(&refused);
    assert!((1000..=3600).contains(&seconds), "{seconds}");
    // All hooks together: the other hook is refused to this client too, and so is a made-up
    // one (a flood of random hook names is no way around the limit).
    retry_after(&app.post_hook("other", "", &[]).await);
    retry_after(&app.post_hook("nope", "", &[]).await);
}

#[tokio::test]
async fn made_up_hook_names_count_against_the_clients_limit() {
    let app = TestApp::spawn(&open_hook("rate_limit: {per_ip: 1/h, burst: 2}", "")).await;
    assert_eq!(app.post_hook("nope-1", "", &[]).await.status, 404);
    assert_eq!(app.post_hook("nope-2", "", &[]).await.status, 404);
    retry_after(&app.post_hook("nope-3", "", &[]).await);
    retry_after(&app.post_hook("open", "", &[]).await);
}

#[tokio::test]
async fn a_signed_valid_request_over_the_limit_gets_429_and_runs_nothing() {
    let config = format!(
        r#"
server: {{admin_token: "admin-s3cret"}}
hooks:
  - id: deploy
    signature: {{github: {{secret: "{SECRET}"}}}}
    rate_limit: {{per_hook: 1/h, burst: 1}}
    run: {{shell: "echo ran >> $DIR/ran"}}
    response: {{mode: async}}
"#
    );
    let app = TestApp::spawn(&config).await;
    let send = |delivery: &'static str| {
        let body = format!(r#"{{"delivery": "{delivery}"}}"#);
        let signature = github_signature(SECRET, body.as_bytes());
        let app = &app;
        async move {
            app.post_hook(
                "deploy",
                body,
                &[
                    ("X-Hub-Signature-256", signature.as_str()),
                    ("X-GitHub-Delivery", delivery),
                    ("Content-Type", "application/json"),
                ],
            )
            .await
        }
    };
    let accepted = send("first").await;
    assert_eq!(accepted.status, 202, "{:?}", accepted.body);
    let id = accepted.body["job_id"].as_str().unwrap().to_string();
    retry_after(&send("second").await);
    app.wait_for_job(&id, |job| job["status"] == "succeeded")
        .await;

    let listed = app.request(Method::GET, "/jobs", "", &ADMIN).await;
    let jobs = listed.body["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 1, "only the first was stored: {jobs:?}");
    let ran = std::fs::read_to_string(app.path("ran")).unwrap();
    assert_eq!(ran, "ran\n");
}

#[tokio::test]
async fn a_body_over_the_limit_is_not_waited_for() {
    let app = TestApp::spawn(&open_hook("rate_limit: {per_ip: 1/h, burst: 1}", "")).await;
    assert_eq!(app.post_hook("open", "", &[]).await.status, 200);

    // Headers that promise a large body, and no body: the answer must come all the same.
    let address = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"POST /hooks/open HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 5000000\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the answer comes, and the connection closes, without the body");
    read.unwrap();
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 429"), "{answer}");
    assert!(answer.contains("\r\nretry-after: "), "{answer}");
}

/// Reads one answer (headers and a `Content-Length` body) from `stream`, lower-cased.
async fn read_answer(stream: &mut tokio::net::TcpStream) -> String {
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    let read = async {
        loop {
            let n = stream.read(&mut byte).await.unwrap();
            assert_eq!(n, 1, "the connection closed inside an answer: {answer:?}");
            answer.push(byte[0]);
            let text = String::from_utf8_lossy(&answer).to_ascii_lowercase();
            let Some(end) = text.find("\r\n\r\n") else {
                continue;
            };
            let length: usize = text
                .lines()
                .find_map(|line| line.strip_prefix("content-length: "))
                .map_or(0, |length| length.trim().parse().unwrap());
            if answer.len() == end + 4 + length {
                return text;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("an answer within 10 s")
}

#[tokio::test]
async fn a_small_refused_body_is_dropped_and_the_connection_kept() {
    let app = TestApp::spawn(&open_hook("rate_limit: {per_ip: 1/h, burst: 1}", "")).await;
    assert_eq!(app.post_hook("open", "", &[]).await.status, 200);

    // A flood on one connection: every request is answered 429 on it, so the sender need not
    // open a new connection for each (the connection is most of a refusal's cost).
    let address = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let body = r#"{"ref": "refs/heads/main"}"#;
    let request = format!(
        "POST /hooks/open HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    for _ in 0..3 {
        stream.write_all(request.as_bytes()).await.unwrap();
        let answer = read_answer(&mut stream).await;
        assert!(answer.starts_with("http/1.1 429"), "{answer}");
        assert!(!answer.contains("connection: close"), "{answer}");
    }
}

#[tokio::test]
async fn clients_behind_a_trusted_proxy_are_limited_apart() {
    let app = TestApp::spawn(&open_hook(
        "trusted_proxies: [127.0.0.1], rate_limit: {per_ip: 1/h, burst: 2}",
        "",
    ))
    .await;
    for _ in 0..2 {
        assert_eq!(post_from(&app, "open", "198.51.100.1").await.status, 200);
    }
    retry_after(&post_from(&app, "open", "198.51.100.1").await);
    // Another client behind the same proxy has its own allowance.
    assert_eq!(post_from(&app, "open", "198.51.100.2").await.status, 200);
    // A hop the proxy added that does not parse makes the address unknown: one shared key,
    // not the proxy's and not the other clients'.
    for _ in 0..2 {
        assert_eq!(post_from(&app, "open", "unknown").await.status, 200);
    }
    retry_after(&post_from(&app, "open", "garbage").await);
    assert_eq!(post_from(&app, "open", "198.51.100.3").await.status, 200);
}

#[tokio::test]
async fn a_hooks_limit_counts_every_request_to_it() {
    let app = TestApp::spawn(&open_hook(
        "trusted_proxies: [127.0.0.1]",
        "rate_limit: {per_hook: 1/h, burst: 2}",
    ))
    .await;
    assert_eq!(post_from(&app, "open", "198.51.100.1").await.status, 200);
    // A request the hook refuses for its method still counts.
    let wrong_method = app
        .request(
            Method::PUT,
            "/hooks/open",
            "",
            &[("X-Forwarded-For", "198.51.100.2")],
        )
        .await;
    assert_eq!(wrong_method.status, 405);
    let refused = post_from(&app, "open", "198.51.100.3").await;
    retry_after(&refused);
    assert!(
        refused.body["message"]
            .as_str()
            .unwrap()
            .contains("hook `open`"),
        "{:?}",
        refused.body
    );
    // Other hooks have no limit of their own.
    for _ in 0..5 {
        assert_eq!(post_from(&app, "other", "198.51.100.3").await.status, 200);
    }
}

async fn post(client: &reqwest::Client, url: &str) -> u16 {
    client.post(url).send().await.unwrap().status().as_u16()
}

fn write_config(dir: &Path, text: &str) -> std::path::PathBuf {
    let file = dir.join("hooks.yaml");
    std::fs::write(&file, text).unwrap();
    file
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_keeps_the_counts_and_a_changed_limit_takes_effect() {
    let dir = tempfile::tempdir().unwrap();
    let limited = open_hook("rate_limit: {per_ip: 1/h, burst: 2}", "");
    let file = write_config(dir.path(), &limited);
    let (server, base) = serve_binary(&file, &[], &[], |_| {}).await;
    let client = reqwest::Client::new();
    let url = format!("{base}/hooks/open");
    assert_eq!(post(&client, &url).await, 200);
    assert_eq!(post(&client, &url).await, 200);
    assert_eq!(post(&client, &url).await, 429);

    // The same limits, another hook: the client's count stays.
    write_config(
        dir.path(),
        &format!("{limited}  - id: third\n    signature: none\n    run: {{command: [\"true\"]}}\n"),
    );
    server.signal(Signal::SIGHUP);
    eventually_logged(&server, "the first reload", |log| {
        log.matches("config reloaded").count() == 1
    })
    .await;
    assert_eq!(post(&client, &url).await, 429, "{}", server.log());
    assert_eq!(post(&client, &format!("{base}/hooks/third")).await, 429);

    // A larger burst: a new allowance, at once.
    write_config(
        dir.path(),
        &open_hook("rate_limit: {per_ip: 1/h, burst: 5}", ""),
    );
    server.signal(Signal::SIGHUP);
    eventually_logged(&server, "the second reload", |log| {
        log.matches("config reloaded").count() == 2
    })
    .await;
    assert_eq!(post(&client, &url).await, 200, "{}", server.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_are_counted_in_metrics_and_logged_as_one_summary_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(
        dir.path(),
        &open_hook("", "rate_limit: {per_hook: 1/h, burst: 1}"),
    );
    let (server, base) = serve_binary(&file, &[], &[], |_| {}).await;
    let client = reqwest::Client::new();
    let url = format!("{base}/hooks/open");
    assert_eq!(post(&client, &url).await, 200);
    for _ in 0..40 {
        assert_eq!(post(&client, &url).await, 429);
    }

    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "hookrunner_rate_limited_total{hook=\"open\",scope=\"hook\"} 40",
        "hookrunner_requests_total{hook=\"open\",outcome=\"rate_limited\"} 40",
    ] {
        assert!(metrics.contains(line), "missing {line} in:\n{metrics}");
    }

    let summary = "rate limited: 40 requests from 127.0.0.1 to open (per_hook)";
    eventually_logged(&server, "the summary", |log| log.contains(summary)).await;
    let log = server.log();
    assert_eq!(
        log.matches("rate limited:").count(),
        1,
        "one line for all forty:\n{log}"
    );
    let request_lines = log
        .lines()
        .filter(|line| line.contains("path=/hooks/open"))
        .count();
    assert_eq!(
        request_lines, 1,
        "only the taken request has a line:\n{log}"
    );
}
