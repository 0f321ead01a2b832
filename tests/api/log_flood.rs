//! The log under floods, with the real binary: neither malformed requests nor a server out of file
//! descriptors may write a line per event, and the server serves again once the flood is over.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::helpers::{eventually_logged, eventually_status, free_port, status_of, Binary};

fn write_config(dir: &Path) -> String {
    let config = dir.join("hooks.yaml");
    let text = "hooks:\n  - id: open\n    signature: none\n    run: {command: [\"true\"]}\n";
    std::fs::write(&config, text).unwrap();
    config.to_str().unwrap().to_string()
}

/// Sends raw bytes and reads until the server closes the connection.
fn send_raw(address: &str, request: &[u8]) {
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_malformed_requests_do_not_write_fifty_log_lines() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let server = Binary::spawn(
        &["serve", "--config", &config, "--listen", &listen],
        dir.path(),
        |_| {},
    );
    let base = format!("http://127.0.0.1:{port}");
    eventually_status(&format!("{base}/healthz"), reqwest::Method::GET, 200).await;
    let lines_before = server.log().lines().count();

    let address = listen.clone();
    tokio::task::spawn_blocking(move || {
        let malformed: [&[u8]; 3] = [
            b"\x01\x02 / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
            b"POST /hooks/open HTTP/1.1\r\nHost: x\r\nContent-Length: 12, 13\r\n\r\n",
        ];
        for index in 0..50 {
            send_raw(&address, malformed[index % malformed.len()]);
        }
    })
    .await
    .unwrap();

    // They are reported, summarised.
    eventually_logged(&server, "a summary of the malformed requests", |log| {
        log.contains("protocol error")
    })
    .await;
    assert_eq!(
        status_of(&format!("{base}/healthz"), reqwest::Method::GET).await,
        200
    );
    let log = server.log();
    let grown = log.lines().count() - lines_before;
    assert!(grown <= 5, "{grown} new lines:\n{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_out_of_file_descriptors_logs_a_summary_and_serves_again_once_they_free_up() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let server = Binary::spawn_with_file_limit(
        64,
        &["serve", "--config", &config, "--listen", &listen],
        dir.path(),
    );
    let base = format!("http://127.0.0.1:{port}");
    eventually_status(&format!("{base}/healthz"), reqwest::Method::GET, 200).await;
    assert_eq!(
        status_of(&format!("{base}/hooks/open"), reqwest::Method::POST).await,
        200,
        "{}",
        server.log()
    );

    // Far more idle connections than the server has descriptors: accepting fails with EMFILE.
    let address = listen.clone();
    let connections = tokio::task::spawn_blocking(move || {
        (0..200)
            .map(|_| std::net::TcpStream::connect(&address).unwrap())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    eventually_logged(&server, "the failing accepts", |log| {
        log.contains("Too many open files")
    })
    .await;
    // While the connections pile up, the accept loop keeps retrying (every 500 ms in
    // actix-server); a line per retry would be six or more in this window.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let log = server.log();
    let accept_lines = log
        .lines()
        .filter(|line| line.contains("Too many open files"))
        .count();
    assert!(accept_lines <= 2, "{accept_lines} lines:\n{log}");

    drop(connections);
    let deadline = Instant::now() + Duration::from_secs(30);
    while status_of(&format!("{base}/hooks/open"), reqwest::Method::POST).await != 200 {
        assert!(
            Instant::now() < deadline,
            "hooks do not work again:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
