//! The config file as the real binary reads it: literal secrets are named by place only, in
//! `check` and in the server's log, and a reload logs only the changes the file really made.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::helpers::{eventually_status, free_port, Binary};

const LITERALS: [&str; 4] = [
    "gh-literal-1234",
    "rotated-literal-5678",
    "second-literal-9012",
    "admin-literal-3456",
];

/// A config with literal secrets in a hook, in a rotation list and in `admin_token`.
fn literal_secrets_config(dir: &Path) -> String {
    let [github, first, second, admin] = LITERALS;
    format!(
        "server:\n  state_dir: {state}\n  admin_token: {admin}\nhooks:\n  - id: push\n    signature: {{github: {{secret: {github}}}}}\n    run: {{command: [\"true\"]}}\n  - id: rotated\n    signature:\n      slack:\n        secret: [{first}, {second}]\n    run: {{command: [\"true\"]}}\n",
        state = dir.join("state").display(),
    )
}

/// Every literal is absent, and each is named by its place and key.
fn assert_names_places_not_values(output: &str) {
    for literal in LITERALS {
        assert!(
            !output.contains(literal),
            "a literal secret was printed:\n{output}"
        );
    }
    for expected in [
        "hooks.yaml:3:16: warning: the secret `server.admin_token` is written in the file",
        "hooks.yaml:6:34: warning: the secret `hooks[0].signature.github.secret` is written in the file",
        "hooks.yaml:11:18: warning: the secret `hooks[1].signature.slack.secret[0]` is written in the file",
        "hooks.yaml:11:40: warning: the secret `hooks[1].signature.slack.secret[1]` is written in the file",
    ] {
        assert!(output.contains(expected), "no {expected:?} in:\n{output}");
    }
}

#[test]
fn check_names_literal_secrets_by_place_and_never_prints_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hooks.yaml");
    std::fs::write(&file, literal_secrets_config(dir.path())).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hookrunner"))
        .args(["check", "--config"])
        .arg(&file)
        .env_remove("HOOKRUNNER_CONFIG")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
    .replace(file.to_str().unwrap(), "hooks.yaml");
    assert_names_places_not_values(&printed);
}

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
async fn the_server_log_names_literal_secrets_by_place_at_start_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hooks.yaml");
    std::fs::write(&file, literal_secrets_config(dir.path())).unwrap();
    let (server, _) = serve(dir.path(), &[]).await;
    let log = || server.log().replace(file.to_str().unwrap(), "hooks.yaml");
    assert_names_places_not_values(&log());

    server.signal(Signal::SIGHUP);
    eventually("the reload is logged", || log().contains("config reloaded")).await;
    let log = log();
    assert_eq!(
        log.matches("`server.admin_token` is written").count(),
        2,
        "warned at start and at the reload:\n{log}"
    );
    assert_names_places_not_values(&log);
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
