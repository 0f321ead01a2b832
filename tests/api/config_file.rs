//! The config file as the real binary reads it: a reload logs only the changes the file really made.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::helpers::{eventually_status, free_port, Binary};

/// Polls until `check` holds, failing after a deadline.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts the real binary on `hooks.yaml` in `dir` with the given extra flags; returns it and its URL.
async fn serve(dir: &Path, extra: &[&str]) -> (Binary, String) {
    let port = free_port();
    let config = dir.join("hooks.yaml");
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec![
        "serve",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        &listen,
    ];
    args.extend_from_slice(extra);
    let server = Binary::spawn(&args, dir, |_| {});
    let base = format!("http://{listen}");
    eventually_status(&format!("{base}/healthz"), reqwest::Method::GET, 200).await;
    (server, base)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_logs_no_change_for_settings_given_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hooks.yaml");
    let hooks = "hooks:\n  - id: a\n    signature: none\n    run: {command: [\"true\"]}\n";
    std::fs::write(&file, hooks).unwrap();
    let state = dir.path().join("elsewhere");
    let extra = [
        "--log-format",
        "json",
        "--state-dir",
        state.to_str().unwrap(),
    ];
    let (server, _) = serve(dir.path(), &extra).await;

    server.signal(Signal::SIGHUP);
    eventually("the first reload is logged", || {
        server.log().matches("config reloaded").count() == 1
    })
    .await;
    // A setting the file really changed is still reported, so the message is not lost for good.
    std::fs::write(&file, format!("server: {{max_jobs: 3}}\n{hooks}")).unwrap();
    server.signal(Signal::SIGHUP);
    eventually("the second reload is logged", || {
        server.log().matches("config reloaded").count() == 2
    })
    .await;
    let log = server.log();
    let changes: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("takes effect at the next restart"))
        .collect();
    assert_eq!(changes.len(), 1, "{log}");
    assert!(changes[0].contains("`server.max_jobs` changed"), "{log}");
}
