//! `hookrunner send --retry`: the real binary against a scripted HTTP receiver on loopback.

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;

use crate::helpers::free_port;
use crate::receiver::Receiver;

const BODY: &str = r#"{"ref": "refs/heads/main", "note": "sent again, byte for byte"}"#;
const STANDARD_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

fn send_command(
    url: &str,
    provider: &str,
    secret: &str,
    flags: &[&str],
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_hookrunner"));
    command
        .args(["send", url, "--provider", provider, "--secret", secret])
        .args(["--data", BODY, "--event", "push"])
        .args(flags)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

async fn send(url: &str, flags: &[&str]) -> Output {
    send_command(url, "github", "s3cret", flags)
        .output()
        .await
        .unwrap()
}

fn stderr_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn send_retries_a_503_and_a_500_honouring_retry_after_until_a_200() {
    let receiver = Receiver::start(&[
        ("503 Service Unavailable", ""),
        ("500 Internal Server Error", "Retry-After: 1\r\n"),
        ("200 OK", ""),
    ])
    .await;
    let output = send(&receiver.url, &["--retry", "5", "--retry-delay", "100ms"]).await;

    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines = stderr_lines(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout} {lines:#?}");
    assert_eq!(stdout, "HTTP/1.1 200 OK\nanswer3\n");
    assert_eq!(receiver.tries(), 3, "{lines:#?}");
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(
        lines[0].starts_with("hookrunner: try 1: 503 Service Unavailable; next try in "),
        "{lines:#?}"
    );
    assert!(
        lines[1].starts_with(
            "hookrunner: try 2: 500 Internal Server Error, `Retry-After` 1s; next try in 1s"
        ),
        "{lines:#?}"
    );
    assert_eq!(lines[2], "hookrunner: try 3: 200 OK");

    // Equal jitter waits at least half the first delay; `Retry-After: 1` outweighs the backoff.
    let gaps = receiver.gaps();
    assert!(gaps[0] >= Duration::from_millis(50), "{gaps:?}");
    assert!(gaps[1] >= Duration::from_secs(1), "{gaps:?}");

    // The same body and the same signature every time, and nothing secret on standard error.
    let seen = receiver.seen.lock().unwrap();
    let signature = seen[0].header("X-Hub-Signature-256").to_string();
    assert!(signature.starts_with("sha256="), "{signature}");
    for request in seen.iter() {
        assert_eq!(request.body, BODY.as_bytes());
        assert_eq!(request.header("X-Hub-Signature-256"), signature);
        assert_eq!(request.header("X-GitHub-Event"), "push");
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains(&signature)
            && !stderr.contains("refs/heads")
            && !stderr.contains("answer"),
        "{stderr}"
    );
}

#[tokio::test]
async fn send_does_not_retry_a_400() {
    let receiver = Receiver::start(&[("400 Bad Request", ""), ("200 OK", "")]).await;
    let output = send(&receiver.url, &["--retry", "3", "--retry-delay", "10ms"]).await;

    assert_eq!(output.status.code(), Some(1));
    assert_eq!(receiver.tries(), 1);
    assert_eq!(
        stderr_lines(&output),
        ["hookrunner: try 1: 400 Bad Request"]
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "HTTP/1.1 400 Bad Request\nanswer1\n"
    );
}

#[tokio::test]
async fn send_without_retry_tries_once_as_before() {
    let receiver = Receiver::start(&[("503 Service Unavailable", ""), ("200 OK", "")]).await;
    let output = send(&receiver.url, &[]).await;

    assert_eq!(output.status.code(), Some(1));
    assert_eq!(receiver.tries(), 1);
    assert!(output.stderr.is_empty(), "{:?}", stderr_lines(&output));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "HTTP/1.1 503 Service Unavailable\nanswer1\n"
    );
}

#[tokio::test]
async fn send_retries_a_receiver_that_is_down_until_it_is_up() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/hooks/deploy");
    let mut child = send_command(
        &url,
        "github",
        "s3cret",
        &["--retry", "20", "--retry-delay", "200ms"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), stderr.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        first.starts_with("hookrunner: try 1: cannot connect: ")
            && first.contains("; next try in "),
        "{first}"
    );

    // Up only now that a try has been refused.
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let receiver = Receiver::on(listener, &[("200 OK", "")]);
    let mut rest = Vec::new();
    while let Some(line) = stderr.next_line().await.unwrap() {
        rest.push(line);
    }
    let output = child.wait_with_output().await.unwrap();
    assert_eq!(output.status.code(), Some(0), "{rest:#?}");
    assert_eq!(receiver.tries(), 1);
    let last = rest.last().unwrap();
    assert!(last.ends_with(": 200 OK"), "{rest:#?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "HTTP/1.1 200 OK\nanswer1\n"
    );
}

#[tokio::test]
async fn send_stops_retrying_when_retry_max_time_runs_out() {
    let receiver = Receiver::start(&[("503 Service Unavailable", "")]).await;
    let started = Instant::now();
    let output = send(
        &receiver.url,
        &[
            "--retry",
            "1000",
            "--retry-delay",
            "100ms",
            "--retry-max-time",
            "1s",
        ],
    )
    .await;

    let lines = stderr_lines(&output);
    assert_eq!(output.status.code(), Some(1), "{lines:#?}");
    let tries = receiver.tries();
    assert!((2..1000).contains(&tries), "{tries} {lines:#?}");
    assert_eq!(lines.len(), tries, "{lines:#?}");
    assert_eq!(
        lines.last().unwrap(),
        &format!("hookrunner: try {tries}: 503 Service Unavailable; `--retry-max-time` ran out, not trying again")
    );
    // The last try starts when the budget ends, not before.
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[tokio::test]
async fn send_stops_at_once_when_retry_after_asks_for_more_than_retry_max_time_leaves() {
    let receiver = Receiver::start(&[
        ("429 Too Many Requests", "Retry-After: 3600\r\n"),
        ("200 OK", ""),
    ])
    .await;
    let started = Instant::now();
    let output = send(&receiver.url, &["--retry", "5", "--retry-max-time", "30s"]).await;

    assert_eq!(output.status.code(), Some(1));
    assert_eq!(receiver.tries(), 1);
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].starts_with("hookrunner: try 1: 429 Too Many Requests, `Retry-After` 1h; the receiver asks for a wait of 1h, more than the ")
            && lines[0].ends_with(" left of `--retry-max-time`, not trying again"),
        "{lines:#?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "it did not wait"
    );
}

#[tokio::test]
async fn send_signs_each_try_of_a_timestamped_provider_anew_with_the_same_id() {
    let receiver =
        Receiver::start(&[("502 Bad Gateway", "Retry-After: 1\r\n"), ("200 OK", "")]).await;
    let output = send_command(
        &receiver.url,
        "standard",
        STANDARD_SECRET,
        &["--retry", "1", "--id", "msg_retried"],
    )
    .output()
    .await
    .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{:#?}",
        stderr_lines(&output)
    );

    let seen = receiver.seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    let timestamps: Vec<i64> = seen
        .iter()
        .map(|request| request.header("webhook-timestamp").parse().unwrap())
        .collect();
    // A second apart at least (`Retry-After: 1`), so each try carries its own time.
    assert!(timestamps[1] > timestamps[0], "{timestamps:?}");
    for (request, timestamp) in seen.iter().zip(&timestamps) {
        assert_eq!(request.body, BODY.as_bytes());
        assert_eq!(request.header("webhook-id"), "msg_retried");
        let expected = std::process::Command::new(env!("CARGO_BIN_EXE_hookrunner"))
            .args([
                "sign",
                "--provider",
                "standard",
                "--secret",
                STANDARD_SECRET,
            ])
            .args(["--data", BODY, "--id", "msg_retried"])
            .args(["--timestamp", &timestamp.to_string()])
            .output()
            .unwrap();
        let expected = String::from_utf8(expected.stdout).unwrap();
        let signature = format!("webhook-signature: {}", request.header("webhook-signature"));
        assert!(expected.lines().any(|line| line == signature), "{expected}");
    }
}

#[tokio::test]
async fn send_refuses_a_url_it_cannot_parse_as_a_usage_error_without_trying() {
    let output = send("not-a-url", &["--retry", "3"]).await;

    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("`not-a-url` is not a URL (relative URL without a base)"),
        "{stderr}"
    );
    assert!(!stderr.contains("try 1"), "{stderr}");
}

#[tokio::test]
async fn send_judges_an_answer_cut_short_by_its_status() {
    let receiver = Receiver::start(&[
        ("400 Bad Request", "Content-Length: 100\r\n"),
        ("200 OK", ""),
    ])
    .await;
    let output = send(&receiver.url, &["--retry", "3", "--retry-delay", "10ms"]).await;

    let lines = stderr_lines(&output);
    assert_eq!(output.status.code(), Some(1), "{lines:#?}");
    assert_eq!(receiver.tries(), 1, "{lines:#?}");
    assert!(
        lines[0].starts_with("hookrunner: try 1: 400 Bad Request, the body cut short: "),
        "{lines:#?}"
    );
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines[1].starts_with("hookrunner: the body of the answer was cut short: "),
        "{lines:#?}"
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "HTTP/1.1 400 Bad Request\n\n"
    );
}
