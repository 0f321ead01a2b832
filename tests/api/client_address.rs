//! Who the client is: forwarded hops that do not parse, IPv4 peers on `[::]` listeners, `unix:`
//! listeners with and without `unix` in `trusted_proxies`, and rules that fail closed when the
//! address is unknown.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::UnixStream;

use crate::helpers::{check_text, Answer, TestApp};

/// `echo` prints the address it was given (`unknown` when there is none); `allow` holds only for
/// loopback clients; `deny` holds for everyone outside 203.0.113.0/24; `either` wraps the deny-list
/// in an `any` whose other branch never holds.
const HOOKS: &str = r#"
hooks:
  - id: echo
    signature: none
    run:
      shell: 'printf %s "$IP"'
      env: {IP: '{{ request.remote_ip | "unknown" }}'}
    response: {include_output: true}
  - id: allow
    signature: none
    when: {request.remote_ip: {cidr: [127.0.0.0/8]}}
    run: {command: ["true"]}
  - id: deny
    signature: none
    when: {not: {request.remote_ip: {cidr: [203.0.113.0/24]}}}
    run: {command: ["true"]}
  - id: either
    signature: none
    when:
      any:
        - header.X-Never: sent
        - not: {request.remote_ip: {cidr: [203.0.113.0/24]}}
    run: {command: ["true"]}
"#;

/// Starts the server on `listen` with `server` as its `server:` section.
async fn spawn_listening(server: &str, listen: &[&str]) -> TestApp {
    TestApp::spawn_listening(&format!("server: {server}\n{HOOKS}"), listen).await
}

fn socket(app: &TestApp) -> PathBuf {
    app.path("hookrunner.sock")
}

/// One raw HTTP/1.1 request over a unix socket: the status and the JSON body.
async fn post_over_unix(socket: &Path, hook: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut stream = UnixStream::connect(socket)
        .await
        .expect("the socket accepts");
    let mut request = format!(
        "POST /hooks/{hook} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n"
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head}"));
    let body = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    (status, body)
}

/// What `echo` printed, or the whole answer when it did not run.
fn echoed(answer: &Answer) -> String {
    match answer.body["stdout"].as_str() {
        Some(stdout) => stdout.to_string(),
        None => format!("did not run: {:?}", answer.body),
    }
}

fn status(body: &Value) -> &str {
    body["status"].as_str().unwrap_or("(none)")
}

#[tokio::test]
async fn a_forwarded_hop_that_is_not_an_address_makes_the_client_unknown() {
    let app = spawn_listening("{trusted_proxies: [127.0.0.1/32]}", &["127.0.0.1:0"]).await;
    let cases: &[(&[(&str, &str)], &str)] = &[
        // Controls: trusted hops are skipped from the right; no header means the peer itself.
        (
            &[("X-Forwarded-For", "198.51.100.1, 127.0.0.1")],
            "198.51.100.1",
        ),
        (
            &[("X-Forwarded-For", "6.6.6.6, 198.51.100.1")],
            "198.51.100.1",
        ),
        (&[], "127.0.0.1"),
        (
            &[("X-Forwarded-For", "::ffff:198.51.100.9")],
            "198.51.100.9",
        ),
        // A hop that does not parse ends the walk: everything left of it is the client's say.
        (&[("X-Forwarded-For", "10.1.2.3, unix:")], "unknown"),
        (&[("X-Forwarded-For", "10.1.2.3, unknown")], "unknown"),
        (
            &[("X-Forwarded-For", "10.1.2.3, garbage, 127.0.0.1")],
            "unknown",
        ),
        (&[("X-Forwarded-For", "10.1.2.3,")], "unknown"),
        (
            &[
                ("X-Forwarded-For", "unknown"),
                ("Forwarded", "for=203.0.113.9"),
            ],
            "unknown",
        ),
        (&[("Forwarded", "for=10.1.2.3, for=unknown")], "unknown"),
        (&[("Forwarded", "for=10.1.2.3, for=_hidden")], "unknown"),
        (
            &[("Forwarded", "for=198.51.100.2;proto=https")],
            "198.51.100.2",
        ),
    ];
    for (headers, expected) in cases {
        let answer = app.post_hook("echo", "", headers).await;
        assert_eq!(echoed(&answer), *expected, "{headers:?}");
    }
    // The deny-list cannot be passed with an address nobody knows.
    let spoofed = app
        .post_hook("deny", "", &[("X-Forwarded-For", "203.0.113.5, unknown")])
        .await;
    assert_eq!(status(&spoofed.body), "skipped", "{:?}", spoofed.body);
}

#[tokio::test]
async fn forwarded_is_read_only_from_a_trusted_peer() {
    let app = spawn_listening("{trusted_proxies: [10.0.0.0/8]}", &["127.0.0.1:0"]).await;
    for headers in [
        [("Forwarded", "for=198.51.100.2")],
        [("X-Forwarded-For", "198.51.100.2")],
    ] {
        let answer = app.post_hook("echo", "", &headers).await;
        assert_eq!(echoed(&answer), "127.0.0.1", "{headers:?}");
    }
}

#[tokio::test]
async fn an_ipv4_client_of_an_ipv6_listener_is_an_ipv4_address() {
    let app = spawn_listening("{trusted_proxies: [127.0.0.1/32]}", &["[::]:0"]).await;
    assert_eq!(echoed(&app.post_hook("echo", "", &[]).await), "127.0.0.1");
    let allowed = app.post_hook("allow", "", &[]).await;
    assert_eq!(status(&allowed.body), "succeeded", "{:?}", allowed.body);
    // 127.0.0.1 is a trusted proxy even when it arrives as ::ffff:127.0.0.1.
    let forwarded = app
        .post_hook("echo", "", &[("X-Forwarded-For", "198.51.100.7")])
        .await;
    assert_eq!(echoed(&forwarded), "198.51.100.7");
}

#[tokio::test]
async fn a_unix_socket_client_has_no_address_and_address_rules_fail_closed() {
    let app = spawn_listening(
        "{trusted_proxies: [127.0.0.1/32]}",
        &["unix:$DIR/hookrunner.sock"],
    )
    .await;
    let socket = socket(&app);
    let proxied = [("X-Forwarded-For", "198.51.100.7")];
    for headers in [&[][..], &proxied[..]] {
        let (code, body) = post_over_unix(&socket, "echo", headers).await;
        assert_eq!((code, body["stdout"].as_str()), (200, Some("unknown")));
        for hook in ["allow", "deny", "either"] {
            let (code, body) = post_over_unix(&socket, hook, headers).await;
            assert_eq!((code, status(&body)), (200, "skipped"), "{hook}: {body:?}");
            assert!(
                body["reason"]
                    .as_str()
                    .is_some_and(|reason| reason.contains("address is unknown")),
                "{hook}: {body:?}"
            );
        }
    }
}

#[tokio::test]
async fn unix_in_trusted_proxies_believes_the_proxy_on_a_unix_listener() {
    let app = spawn_listening(
        "{trusted_proxies: [unix, 10.0.0.0/8]}",
        &["unix:$DIR/hookrunner.sock"],
    )
    .await;
    let socket = socket(&app);
    let cases: &[(&[(&str, &str)], &str, &str)] = &[
        (
            &[("X-Forwarded-For", "198.51.100.7")],
            "198.51.100.7",
            "succeeded",
        ),
        (
            &[("X-Forwarded-For", "203.0.113.5")],
            "203.0.113.5",
            "skipped",
        ),
        (
            &[("X-Forwarded-For", "203.0.113.5, 10.0.0.1")],
            "203.0.113.5",
            "skipped",
        ),
        (
            &[("Forwarded", "for=\"[2001:db8::1]:443\"")],
            "2001:db8::1",
            "succeeded",
        ),
        // The proxy said nothing: the address stays unknown.
        (&[], "unknown", "skipped"),
    ];
    for (headers, address, deny) in cases {
        let (_, body) = post_over_unix(&socket, "echo", headers).await;
        assert_eq!(body["stdout"].as_str(), Some(*address), "{headers:?}");
        let (_, body) = post_over_unix(&socket, "deny", headers).await;
        assert_eq!(status(&body), *deny, "{headers:?}: {body:?}");
    }
}

fn check(text: &str) -> (i32, String) {
    let (code, _, stderr) = check_text(text);
    (code, stderr)
}

#[test]
fn check_refuses_a_trusted_proxy_that_is_neither_an_address_nor_unix() {
    let (code, stderr) = check("server:\n  trusted_proxies: [unix, localhost]\nhooks: []\n");
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("hooks.yaml:2:27: `localhost` is not an address or CIDR range"),
        "{stderr}"
    );
    let (code, stderr) =
        check("server:\n  trusted_proxies: [\"unix:/run/proxy.sock\"]\nhooks: []\n");
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("write `unix` alone"), "{stderr}");
}

#[test]
fn check_warns_when_an_address_rule_can_only_see_unix_socket_clients() {
    let config = |server: &str| {
        format!("server: {server}\nhooks:\n  - id: office\n    signature: none\n    when: {{request.remote_ip: {{cidr: [10.0.0.0/8]}}}}\n    run: {{command: [\"true\"]}}\n")
    };
    let (code, stderr) = check(&config("{listen: [\"unix:/run/h.sock\"]}"));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("hooks.yaml:5:5: warning: hook `office` reads `request.remote_ip`"),
        "{stderr}"
    );
    for quiet in [
        "{listen: [\"unix:/run/h.sock\"], trusted_proxies: [unix]}",
        "{listen: [\"unix:/run/h.sock\", \"127.0.0.1:9000\"]}",
    ] {
        let (code, stderr) = check(&config(quiet));
        assert_eq!((code, stderr.as_str()), (0, ""), "{quiet}");
    }
}
