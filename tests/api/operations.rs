//! Running it as a service: proxies, unix sockets, socket activation, reloads, metrics and slow clients.

use std::io::{Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::helpers::{
    eventually_status, github_signature, read_when_written, serve_binary, status_of, Binary,
    TestApp,
};

const PROXIED: &str = r#"
server: {trusted_proxies: [127.0.0.1/32]}
hooks:
  - id: office-only
    signature: none
    when: {request.remote_ip: {cidr: [203.0.113.0/24]}}
    run: {command: ["true"]}
"#;

#[tokio::test]
async fn forwarded_addresses_and_request_ids_are_believed_only_from_trusted_proxies() {
    let proxied = TestApp::spawn(PROXIED).await;
    let direct =
        TestApp::spawn(&PROXIED.replace("trusted_proxies: [127.0.0.1/32]", "trusted_proxies: []"))
            .await;
    let headers = [
        ("X-Forwarded-For", "198.51.100.1, 203.0.113.7"),
        ("X-Request-Id", "from-the-proxy"),
    ];
    let through_proxy = proxied.post_hook("office-only", "", &headers).await;
    assert_eq!(
        through_proxy.body["status"], "succeeded",
        "{:?}",
        through_proxy.body
    );
    assert_eq!(through_proxy.headers["x-request-id"], "from-the-proxy");
    let spoofed = direct.post_hook("office-only", "", &headers).await;
    assert_eq!(
        spoofed.body["status"], "skipped",
        "an untrusted peer cannot claim an address"
    );
    assert_ne!(spoofed.headers["x-request-id"], "from-the-proxy");
    let forwarded = proxied
        .post_hook(
            "office-only",
            "",
            &[("Forwarded", "for=203.0.113.9;proto=https")],
        )
        .await;
    assert_eq!(forwarded.body["status"], "succeeded");
}

#[tokio::test]
async fn metrics_count_requests_signature_failures_and_jobs() {
    let app = TestApp::spawn("hooks:\n  - id: gh\n    signature: {github: {secret: s}}\n    run: {command: [\"true\"]}\n").await;
    let body = "{}";
    let good = github_signature("s", body.as_bytes());
    assert_eq!(
        app.post_hook("gh", body, &[("X-Hub-Signature-256", &good)])
            .await
            .status,
        200
    );
    assert_eq!(
        app.post_hook(
            "gh",
            body,
            &[("X-Hub-Signature-256", &github_signature("x", b"{}"))]
        )
        .await
        .status,
        401
    );
    assert_eq!(app.post_hook("nope", body, &[]).await.status, 404);
    let metrics = app.request(reqwest::Method::GET, "/metrics", "", &[]).await;
    assert_eq!(metrics.status, 200);
    let text = metrics.body.as_str().unwrap();
    for line in [
        "hookrunner_requests_total{hook=\"gh\",outcome=\"succeeded\"} 1",
        "hookrunner_requests_total{hook=\"gh\",outcome=\"signature_invalid\"} 1",
        "hookrunner_requests_total{hook=\"\",outcome=\"not_found\"} 1",
        "hookrunner_signature_failures_total{hook=\"gh\",reason=\"signature_invalid\"} 1",
        "hookrunner_jobs_total{hook=\"gh\",status=\"succeeded\"} 1",
        "hookrunner_job_duration_seconds_count{hook=\"gh\"} 1",
        "hookrunner_running_jobs 0",
        "hookrunner_queue_depth 0",
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
}

/// The value of one series in the exposition.
fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no `{series}` in:\n{text}"))
}

#[tokio::test]
async fn the_store_fsyncs_before_an_async_202_but_not_for_a_wait_job() {
    let app = TestApp::spawn(
        "hooks:\n  - id: w\n    signature: none\n    run: {command: [\"true\"]}\n  - id: a\n    signature: none\n    run: {command: [\"true\"]}\n    response: {mode: async}\n",
    )
    .await;
    let (synced, unsynced) = (
        "hookrunner_store_commits_total{fsync=\"yes\"}",
        "hookrunner_store_commits_total{fsync=\"no\"}",
    );
    // Past start-up, whose recovery, pruning and readiness checks all fsync.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let scrape = || async {
        let answer = app.request(reqwest::Method::GET, "/metrics", "", &[]).await;
        answer.body.as_str().unwrap().to_string()
    };
    let before = scrape().await;

    let answer = app.post_hook("w", "{}", &[]).await;
    assert_eq!(answer.status, 200);
    // A read is served after every write enqueued before it has committed.
    app.wait_for_job(answer.body["job_id"].as_str().unwrap(), |job| {
        job["status"] == "succeeded"
    })
    .await;
    let after_wait = scrape().await;
    assert_eq!(metric(&after_wait, synced), metric(&before, synced));
    assert!(metric(&after_wait, unsynced) > metric(&before, unsynced));

    let answer = app.post_hook("a", "{}", &[]).await;
    assert_eq!(answer.status, 202);
    let after_async = scrape().await;
    assert!(metric(&after_async, synced) > metric(&after_wait, synced));
}

#[tokio::test]
async fn a_client_trickling_its_headers_is_cut_off() {
    let app = TestApp::spawn("hooks: []\n").await;
    let address = app.address.trim_start_matches("http://").to_string();
    let outcome = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let started = Instant::now();
        stream
            .write_all(b"POST /hooks/x HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        let mut buffer = [0u8; 256];
        while started.elapsed() < Duration::from_secs(30) {
            // One byte of a never-ending header every 200ms.
            if stream.write_all(b"a").is_err() {
                return started.elapsed();
            }
            match stream.read(&mut buffer) {
                Ok(0) => return started.elapsed(),
                Ok(_) => return started.elapsed(),
                Err(error)
                    if error.kind() == std::io::ErrorKind::WouldBlock
                        || error.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return started.elapsed(),
            }
        }
        started.elapsed()
    })
    .await
    .unwrap();
    assert!(
        outcome < Duration::from_secs(20),
        "the slow client was not cut off: {outcome:?}"
    );
}

/// Polls `check` until it holds, with a deadline.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn http_over_unix(path: &Path, request: &str) -> String {
    let mut stream = UnixStream::connect(path).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[tokio::test(flavor = "multi_thread")]
async fn a_unix_socket_is_served_with_private_permissions_and_removed_at_exit() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hooks.yaml"), "hooks: []\n").unwrap();
    let socket = dir.path().join("hookrunner.sock");
    let listen = format!("unix:{}", socket.display());
    let config = dir.path().join("hooks.yaml");
    let mut server = Binary::spawn(
        &[
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--listen",
            &listen,
        ],
        dir.path(),
        |_| {},
    );
    eventually("the socket exists", || socket.exists()).await;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    let socket_path = socket.clone();
    let answer = tokio::task::spawn_blocking(move || {
        http_over_unix(
            &socket_path,
            "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    server.signal(Signal::SIGTERM);
    assert_eq!(server.exit_code().await, Some(0), "{}", server.log());
    assert!(!socket.exists(), "the socket was left behind");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_listener_handed_in_by_systemd_is_used_instead_of_listen() {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    use std::os::fd::AsRawFd as _;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hooks.yaml");
    std::fs::write(&config, "hooks: []\n").unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let fd = listener.as_raw_fd();
    // The child must inherit the socket, as it would from systemd.
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())).unwrap();
    let server = Binary::spawn(
        &[
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--listen",
            "127.0.0.1:1",
        ],
        dir.path(),
        |command| {
            command
                .env("LISTEN_FDS", "1")
                .env("LISTEN_FDS_FIRST_FD", fd.to_string());
        },
    );
    drop(listener);
    let url = format!("http://127.0.0.1:{port}/healthz");
    let deadline = Instant::now() + Duration::from_secs(20);
    while status_of(&url, reqwest::Method::GET).await != 200 {
        assert!(
            Instant::now() < deadline,
            "the handed-in socket is not served:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const HOOK_A: &str =
    "  - id: a\n    signature: none\n    run: {shell: 'touch a-started; sleep 1', workdir: $DIR}\n";
const HOOK_B: &str = "  - id: b\n    signature: none\n    run: {command: [\"true\"]}\n";

fn write_hooks(dir: &Path, hooks: &str) {
    let text = format!("hooks:\n{hooks}").replace("$DIR", dir.to_str().unwrap());
    // Written beside and renamed over, the way editors and `git pull` replace files.
    let temporary = dir.join(".hooks.yaml.tmp");
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, dir.join("hooks.yaml")).unwrap();
}

/// Serves a file holding hook `a` from `dir` with the real binary; returns it and its base URL.
async fn serve_hook_a(dir: &Path, extra: &[&str]) -> (Binary, String) {
    write_hooks(dir, HOOK_A);
    serve_binary(&dir.join("hooks.yaml"), &[], extra, |_| {}).await
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_a_good_file_refuses_a_broken_one_and_lets_running_jobs_finish() {
    let dir = tempfile::tempdir().unwrap();
    let (server, base) = serve_hook_a(dir.path(), &[]).await;
    assert_eq!(
        status_of(&format!("{base}/hooks/b"), reqwest::Method::POST).await,
        404
    );

    // A job running across the reload finishes.
    let running = tokio::spawn(
        reqwest::Client::new()
            .post(format!("{base}/hooks/a"))
            .send(),
    );
    read_when_written(&dir.path().join("a-started")).await;
    write_hooks(dir.path(), &format!("{HOOK_A}{HOOK_B}"));
    server.signal(Signal::SIGHUP);
    eventually_status(&format!("{base}/hooks/b"), reqwest::Method::POST, 200).await;
    let answer = running.await.unwrap().unwrap();
    assert_eq!(answer.status(), 200);

    write_hooks(
        dir.path(),
        &format!("{HOOK_A}  - id: c\n    signature: none\n    run: {{comand: [x]}}\n"),
    );
    server.signal(Signal::SIGHUP);
    let log_has_location =
        || server.log().contains("hooks.yaml:7:") && server.log().contains("unknown key `comand`");
    eventually("the refused file's location is logged", log_has_location).await;
    assert_eq!(
        status_of(&format!("{base}/hooks/b"), reqwest::Method::POST).await,
        200,
        "the old config keeps serving"
    );
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("hookrunner_config_reloads_total{result=\"success\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hookrunner_config_reloads_total{result=\"failure\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_reloads_when_the_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, base) = serve_hook_a(dir.path(), &["--watch"]).await;
    write_hooks(dir.path(), &format!("{HOOK_A}{HOOK_B}"));
    eventually_status(&format!("{base}/hooks/b"), reqwest::Method::POST, 200).await;
}

/// Writes `hooks` as the included file `hooks.d/extra.yaml`, replaced the way editors do.
fn write_included(dir: &Path, hooks: &str) {
    let folder = dir.join("hooks.d");
    std::fs::create_dir_all(&folder).unwrap();
    let temporary = folder.join(".extra.yaml.tmp");
    std::fs::write(&temporary, format!("hooks:\n{hooks}")).unwrap();
    std::fs::rename(&temporary, folder.join("extra.yaml")).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_included_files_hooks_are_served_and_reloaded_on_sighup_and_watch() {
    for extra in [&[][..], &["--watch"][..]] {
        let dir = tempfile::tempdir().unwrap();
        write_included(dir.path(), HOOK_B);
        std::fs::write(
            dir.path().join("hooks.yaml"),
            "include: [\"hooks.d/*.yaml\"]\nhooks: []\n",
        )
        .unwrap();
        let (server, base) = serve_binary(&dir.path().join("hooks.yaml"), &[], extra, |_| {}).await;
        assert_eq!(
            status_of(&format!("{base}/hooks/b"), reqwest::Method::POST).await,
            200,
            "{extra:?}"
        );
        write_included(
            dir.path(),
            "  - id: team/c\n    signature: none\n    run: {command: [\"true\"]}\n",
        );
        if extra.is_empty() {
            server.signal(Signal::SIGHUP);
        }
        eventually_status(&format!("{base}/hooks/team/c"), reqwest::Method::POST, 200).await;
        assert_eq!(
            status_of(&format!("{base}/hooks/b"), reqwest::Method::POST).await,
            404,
            "{extra:?}"
        );
    }
}
