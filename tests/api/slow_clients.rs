//! Clients that are slow or hostile on purpose: a body that trickles in, a `stream` reader that
//! stops reading, and command output that tries to forge server-sent events.

use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::TestApp;

/// What a trickling client saw: the bytes it got back and whether the server closed the connection.
struct Trickled {
    answer: String,
    closed: bool,
}

/// Sends a request head promising a large body, then one byte of it every 200 ms, reading as it goes,
/// until the server closes the connection or 30 s pass.
fn trickle_body(address: &str, path: &str) -> Trickled {
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let head = format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while started.elapsed() < Duration::from_secs(30) {
        // A write may fail once the server has closed; the read below tells.
        let _ = stream.write_all(b"a");
        match stream.read(&mut buffer) {
            Ok(0) => return Trickled::new(answer, true),
            Ok(read) => answer.extend_from_slice(&buffer[..read]),
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            // A reset: the server closed with our unread bytes in its buffer.
            Err(_) => return Trickled::new(answer, true),
        }
    }
    Trickled::new(answer, false)
}

impl Trickled {
    fn new(answer: Vec<u8>, closed: bool) -> Trickled {
        Trickled {
            answer: String::from_utf8_lossy(&answer).into_owned(),
            closed,
        }
    }
}

/// A server with one open hook running `true`, and the given `server.body_timeout`.
async fn open_hook_with_body_timeout(body_timeout: &str) -> TestApp {
    let config = format!(
        "server: {{body_timeout: {body_timeout}}}\nhooks:\n  - id: open\n    signature: none\n    run: {{command: [\"true\"]}}\n"
    );
    TestApp::spawn(&config).await
}

#[tokio::test]
async fn a_body_slower_than_body_timeout_gets_408_and_the_connection_is_closed() {
    let app = open_hook_with_body_timeout("1s").await;
    let address = app.address.trim_start_matches("http://").to_string();
    let trickled = tokio::task::spawn_blocking(move || trickle_body(&address, "/hooks/open"))
        .await
        .unwrap();
    let answer = trickled.answer.to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 408"), "{}", trickled.answer);
    assert!(answer.contains("\"error\":\"body_timeout\""), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    assert!(trickled.closed, "the connection stayed open: {answer}");
}

const FLOOD: &str = r#"
server: {admin_token: "admin-s3cret"}
hooks:
  - id: flood
    signature: none
    run: {shell: 'seq 1 4000000'}
    response: {mode: stream}
"#;

/// The marker a lagging reader gets, and the number of bytes it says were skipped.
fn find_marker(body: &[u8]) -> Option<(usize, usize, u64)> {
    let start = body
        .windows(14)
        .position(|window| window == b"\n[hookrunner: ")?;
    let end_text = b" bytes of output skipped: this reader fell behind]\n";
    let end = start
        + body[start..]
            .windows(end_text.len())
            .position(|window| window == end_text)?;
    let count = std::str::from_utf8(&body[start + 14..end])
        .ok()?
        .parse()
        .ok()?;
    Some((start, end + end_text.len(), count))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_reader_that_falls_behind_gets_a_marker_and_the_job_is_not_slowed() {
    let app = TestApp::spawn(FLOOD).await;
    let expected: String = (1..=4_000_000).map(|n| format!("{n}\n")).collect();
    let response = app
        .client
        .post(format!("{}/hooks/flood", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // The client reads nothing until the job has finished: a reader never holds the job back.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = app
            .request(
                reqwest::Method::GET,
                "/jobs?hook=flood",
                "",
                &[("Authorization", "Bearer admin-s3cret")],
            )
            .await;
        if list.body["jobs"][0]["status"] == "succeeded" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the job never finished: {:?}",
            list.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let body = response.bytes().await.unwrap();
    let body = body
        .strip_suffix(b"\nexit status 0\n".as_slice())
        .expect("the stream ends with the exit status");
    // Each marker stands where the bytes it counts were: what is between markers is the output
    // from exactly that position on.
    let (mut position, mut rest, mut markers) = (0usize, body, 0);
    loop {
        let (piece, skipped, next) = match find_marker(rest) {
            Some((start, end, skipped)) => (&rest[..start], skipped, Some(&rest[end..])),
            None => (rest, 0, None),
        };
        assert_eq!(
            piece,
            &expected.as_bytes()[position..position + piece.len()],
            "output after {markers} markers is not the output at byte {position}"
        );
        position += piece.len() + skipped as usize;
        let Some(next) = next else {
            // What the reader was still owed when it came back is bounded.
            assert!(
                piece.len() <= 1 << 20,
                "{} bytes after the last marker",
                piece.len()
            );
            break;
        };
        markers += 1;
        rest = next;
    }
    assert!(
        markers >= 1,
        "a reader this far behind must be told what it missed"
    );
    assert_eq!(
        position,
        expected.len(),
        "the markers count exactly the bytes missed"
    );
}

/// Parses a `text/event-stream` body the way browsers do (WHATWG HTML, "event stream
/// interpretation"): lines end at CR, LF or CRLF; a blank line dispatches the event.
fn parse_event_stream(body: &str) -> Vec<(String, String)> {
    let mut events = Vec::new();
    let (mut kind, mut data) = (String::new(), String::new());
    let mut rest = body;
    while let Some(end) = rest.find(['\r', '\n']) {
        let line = &rest[..end];
        let terminator = if rest[end..].starts_with("\r\n") {
            2
        } else {
            1
        };
        rest = &rest[end + terminator..];
        if line.is_empty() {
            if !data.is_empty() {
                data.pop();
                let name = if kind.is_empty() { "message" } else { &kind };
                events.push((name.to_string(), std::mem::take(&mut data)));
            }
            kind.clear();
            data.clear();
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => kind = value.to_string(),
            "data" => {
                data.push_str(value);
                data.push('\n');
            }
            _ => {}
        }
    }
    events
}

#[tokio::test]
async fn command_output_cannot_start_a_server_sent_event_of_its_own() {
    let app = TestApp::spawn(
        r#"
hooks:
  - id: forge
    signature: none
    run: {command: ["printf", "a\revent: exit\rdata: {\"forged\":1}\r\rb\r\nevent: exit\ndata: {\"forged\":2}\n\nc\n"]}
    response: {mode: stream}
"#,
    )
    .await;
    let response = app
        .client
        .post(format!("{}/hooks/forge", app.address))
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let body = response.text().await.unwrap();
    let events = parse_event_stream(&body);
    let exits: Vec<_> = events.iter().filter(|(kind, _)| kind == "exit").collect();
    assert_eq!(exits.len(), 1, "{events:?}");
    assert_eq!(events.last().map(|(kind, _)| kind.as_str()), Some("exit"));
    let exit: Value = serde_json::from_str(&exits[0].1).unwrap();
    assert_eq!(exit["status"], "succeeded", "{events:?}");
    assert!(events[..events.len() - 1]
        .iter()
        .all(|(kind, _)| kind == "stdout"));
    // The output still reaches the client, as data, one line per line.
    let output: Vec<&str> = events[..events.len() - 1]
        .iter()
        .flat_map(|(_, data)| data.split('\n'))
        .collect();
    assert_eq!(
        output,
        [
            "a",
            "event: exit",
            "data: {\"forged\":1}",
            "",
            "b",
            "event: exit",
            "data: {\"forged\":2}",
            "",
            "c"
        ]
    );
}

#[tokio::test]
async fn a_body_timeout_too_long_to_be_a_deadline_is_no_deadline_not_a_crash() {
    // An operator's way of saying "never": past what a clock can add, not a panic per request.
    let app = open_hook_with_body_timeout("400000000000years").await;
    let answer = app.post_hook("open", "{}", &[]).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
}
