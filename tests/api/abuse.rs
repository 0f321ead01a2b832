//! Abuse at the front door: many connections, hostile bytes, huge headers, floods and floods of
//! output. None may crash the server or run a command it should not.

use std::io::{Read as _, Write as _};
use std::time::Duration;

use futures_util::future::join_all;
use futures_util::StreamExt as _;

use crate::helpers::{github_signature, TestApp};

const CONFIG: &str = r#"
hooks:
  - id: guarded
    signature: {github: {secret: s3cret}}
    run: {shell: 'echo "$HOOK_JOB_ID" >> ran', workdir: $DIR}
  - id: open
    signature: none
    concurrency: {mode: parallel}
    run: {command: ["true"]}
    # A thousand spawns on a loaded two-core machine can take longer than the default 25 s.
    response: {wait_timeout: 5m}
  - id: loud
    signature: none
    run:
      shell: 'head -c 104857600 /dev/zero | tr "\0" "x"; echo done >&2'
      max_output: 1MiB
    response: {include_output: true}
"#;

/// Sends raw bytes and returns the status line, or "closed" if the server hung up without one.
fn raw(address: &str, request: &[u8]) -> String {
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = stream.write_all(request);
    // Hanging up the sending side ends a body cut short at once, instead of at the read timeout.
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    text.lines()
        .next()
        .map_or("closed".to_string(), str::to_string)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_concurrent_connections_are_all_answered() {
    let app = TestApp::spawn(CONFIG).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let url = format!("{}/hooks/open", app.address);
    let requests = (0..1000).map(|_| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            client
                .post(url)
                .send()
                .await
                .map(|answer| answer.status().as_u16())
        }
    });
    let answers = join_all(requests).await;
    let ok = answers
        .iter()
        .filter(|answer| matches!(answer, Ok(200)))
        .count();
    assert_eq!(
        ok,
        1000,
        "{:?}",
        answers
            .iter()
            .filter(|a| !matches!(a, Ok(200)))
            .take(5)
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_bytes_in_the_request_head_are_refused_without_running_anything() {
    let app = TestApp::spawn(CONFIG).await;
    let address = app.address.trim_start_matches("http://").to_string();
    let huge = "a".repeat(64 * 1024);
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("invalid UTF-8 in a header", "401", b"POST /hooks/guarded HTTP/1.1\r\nHost: x\r\nX-Hub-Signature-256: sha256=\xff\xfe\r\nContent-Length: 2\r\n\r\n{}".to_vec()),
        ("invalid UTF-8 in the path", "400", b"POST /hooks/\xff\xfe HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".to_vec()),
        ("traversal", "404", b"POST /hooks/../../etc/passwd HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".to_vec()),
        ("encoded traversal", "404", b"POST /hooks/..%2f..%2fguarded HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".to_vec()),
        ("64 KiB header", "401", format!("POST /hooks/guarded HTTP/1.1\r\nHost: x\r\nX-Hub-Signature-256: {huge}\r\nContent-Length: 0\r\n\r\n").into_bytes()),
        ("many headers", "431", format!("POST /hooks/guarded HTTP/1.1\r\nHost: x\r\n{}Content-Length: 0\r\n\r\n", "X-A: b\r\n".repeat(200)).into_bytes()),
        ("body shorter than declared", "400", b"POST /hooks/guarded HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{}".to_vec()),
        ("garbage", "400", b"\x00\x01\x02 not http at all\r\n\r\n".to_vec()),
        ("unknown method", "405", b"BREW /hooks/guarded HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".to_vec()),
    ];
    for (name, expected, request) in cases {
        let address = address.clone();
        let status = tokio::task::spawn_blocking(move || raw(&address, &request))
            .await
            .unwrap();
        assert!(
            status.starts_with(&format!("HTTP/1.1 {expected} ")),
            "{name}: {status}"
        );
    }
    assert!(
        !app.path("ran").exists(),
        "a hostile request ran the command"
    );
    assert_eq!(
        app.request(reqwest::Method::GET, "/healthz", "", &[])
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_bad_signatures_runs_nothing_and_good_requests_still_pass() {
    let mut app = TestApp::spawn(CONFIG).await;
    // No pooled connections: on a loaded machine the flood can outlast the server's 10 s head
    // timeout, which answers 408 on connections the pool opened but never used, and a request
    // sent on one of those reads that 408 as an unexpected message.
    app.client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let body = r#"{"ref": "refs/heads/main"}"#;
    let bad = github_signature("wrong", body.as_bytes());
    let headers = [("X-Hub-Signature-256", bad.as_str())];
    // 2,000 requests, 128 in flight at a time: a flood, without the client's own connection
    // errors on a loaded machine (2,000 sockets at once) passing for the server's answers.
    let flood = (0..2000).map(|_| app.post_hook("guarded", body, &headers));
    let answers: Vec<_> = futures_util::stream::iter(flood)
        .buffer_unordered(128)
        .collect()
        .await;
    let statuses: std::collections::BTreeSet<u16> =
        answers.iter().map(|answer| answer.status).collect();
    assert_eq!(statuses, [401].into(), "every bad signature gets 401");
    assert!(!app.path("ran").exists());
    let good = github_signature("s3cret", body.as_bytes());
    assert_eq!(
        app.post_hook("guarded", body, &[("X-Hub-Signature-256", &good)])
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_printing_100_mib_is_truncated_and_still_ends() {
    let app = TestApp::spawn(CONFIG).await;
    let answer = tokio::time::timeout(Duration::from_secs(60), app.post_hook("loud", "", &[]))
        .await
        .expect("the job ends");
    assert_eq!(answer.status, 200, "{:?}", answer.body["status"]);
    let job_id = answer.body["job_id"].as_str().unwrap();
    let stdout = answer.body["stdout"].as_str().unwrap();
    assert!(
        stdout.len() < 70 * 1024,
        "the answer is capped: {}",
        stdout.len()
    );
    let log = app
        .client
        .get(format!("{}/jobs/{job_id}/log", app.address))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(
        log.len() < (1 << 20) + 200,
        "the log is capped: {}",
        log.len()
    );
    assert!(String::from_utf8_lossy(&log)
        .contains("[hookrunner: output truncated after 1048576 bytes]"));
}
