//! `serve --store` / `--instance` (and their `HOOKRUNNER_*` variables) as a user runs them, and the
//! start-up settings of SPEC §11 at a reload: the real binary, real files, and never the URL.

use std::path::Path;

use nix::sys::signal::Signal;

use crate::helpers::{check_text, eventually_status, serve_binary, Binary};

const PASSWORD: &str = "hunter2-pw";
const HOOKS: &str = "hooks:\n  - id: a\n    signature: none\n    run: {command: [\"true\"]}\n";

fn write_config(dir: &Path, text: &str) -> String {
    let file = dir.join("hooks.yaml");
    std::fs::write(&file, text).unwrap();
    file.to_str().unwrap().to_string()
}

/// Runs `serve` with `args` and `env` until it exits; its exit code and stderr.
async fn serve_exits(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), HOOKS);
    let mut all = vec!["serve", "--config", &config, "--listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let mut binary = Binary::spawn(&all, dir.path(), |command| {
        command
            .env_remove("HOOKRUNNER_STORE")
            .env_remove("HOOKRUNNER_INSTANCE");
        for (name, value) in env {
            command.env(name, value);
        }
    });
    let code = binary.exit_code().await;
    (code, binary.log())
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_refuses_a_store_or_instance_that_breaks_the_rules_and_says_why() {
    let mysql = format!("mysql://hr:{PASSWORD}@db/hr");
    let long = "a".repeat(64);
    let forms = "the store must be `sqlite` or a PostgreSQL URL starting with `postgres://` or `postgresql://`";
    let store = "hookrunner: `--store` (or `HOOKRUNNER_STORE`): ";
    let instance = "hookrunner: `--instance` (or `HOOKRUNNER_INSTANCE`): ";
    let cases: Vec<(Vec<&str>, Vec<(&str, &str)>, String)> = vec![
        (vec!["--store", &mysql], vec![], format!("{store}{forms}")),
        (vec![], vec![("HOOKRUNNER_STORE", &mysql)], format!("{store}{forms}")),
        (vec!["--store", ""], vec![], format!("{store}the store is empty")),
        (
            vec!["--store", "env:HOOKRUNNER_TEST_UNSET"],
            vec![],
            format!("{store}environment variable `HOOKRUNNER_TEST_UNSET` is not set"),
        ),
        (
            vec!["--store", "env:THE_URL"],
            vec![("THE_URL", &mysql)],
            format!("{store}`env:THE_URL` holds neither `sqlite` nor a PostgreSQL URL"),
        ),
        (
            vec!["--instance", "web 1"],
            vec![],
            format!("{instance}the instance name has ` `; use 1 to 63 letters, digits, `.`, `_` and `-`, such as `web-1`"),
        ),
        (
            vec![],
            vec![("HOOKRUNNER_INSTANCE", &long)],
            format!("{instance}the instance name is 64 characters long"),
        ),
    ];
    for (args, env, expected) in cases {
        let (code, stderr) = serve_exits(&args, &env).await;
        assert_eq!(code, Some(2), "{args:?} {env:?}: {stderr}");
        assert!(stderr.contains(&expected), "{args:?} {env:?}: {stderr}");
        assert!(!stderr.contains(PASSWORD), "{args:?} {env:?}: {stderr}");
    }
}

#[test]
fn serve_help_never_shows_the_store_variable() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hookrunner"))
        .args(["serve", "--help"])
        .env(
            "HOOKRUNNER_STORE",
            format!("postgres://hr:{PASSWORD}@db/hr"),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("--store <STORE>"), "{stdout}");
    assert!(stdout.contains("--instance <NAME>"), "{stdout}");
    assert!(!stdout.contains(PASSWORD), "{stdout}");
}

#[test]
fn check_never_shows_a_literal_postgres_url() {
    let url = format!("postgres://hr:{PASSWORD}@db.internal/hr");
    let texts = [
        format!("server:\n  store: {url}\n{HOOKS}"),
        format!("server: {{store: \"{url}\", lease: 1s}}\n{HOOKS}"),
        format!("server:\n  store: \"{url}\n{HOOKS}"),
    ];
    for text in texts {
        let (code, stdout, stderr) = check_text(&text);
        assert!(code == 0 || code == 1, "{stderr}");
        assert!(stderr.contains("hooks.yaml:"), "{stderr}");
        assert!(!stdout.contains(PASSWORD), "{stdout}");
        assert!(!stderr.contains(PASSWORD), "{stderr}");
    }
}

/// Serves with `extra` flags, reloads a file that changes `store`, `instance`, `heartbeat` and
/// `lease`, and returns the keys the reload reports as changed, and the log.
async fn keys_changed_by_a_reload(extra: &[&str]) -> (Vec<String>, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), HOOKS);
    let (server, address) = serve_binary(Path::new(&config), &[], extra, |command| {
        command
            .env_remove("HOOKRUNNER_STORE")
            .env_remove("HOOKRUNNER_INSTANCE");
    })
    .await;
    let changed = format!(
        "server:\n  store: postgres://hr:{PASSWORD}@db/hr\n  instance: web-10\n  heartbeat: 1s\n  lease: 1m\n{HOOKS}"
    );
    write_config(dir.path(), &changed);
    server.signal(Signal::SIGHUP);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !server.log().contains("config reloaded") {
        assert!(std::time::Instant::now() < deadline, "{}", server.log());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    eventually_status(&format!("{address}/readyz"), reqwest::Method::GET, 200).await;
    let log = server.log();
    let keys = log
        .lines()
        .filter_map(|line| {
            line.split_once("`server.")?
                .1
                .split_once("` changed; it takes effect at the next restart")
        })
        .map(|(key, _)| key.to_string())
        .collect();
    (keys, log)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_keeps_the_running_store_instance_heartbeat_and_lease() {
    // A flag is applied again at the reload: it is not a change of the file.
    let cases: [(&[&str], &[&str]); 2] = [
        (&["--instance", "web-9"], &["store", "heartbeat", "lease"]),
        (&["--store", "sqlite"], &["instance", "heartbeat", "lease"]),
    ];
    for (extra, expected) in cases {
        let (keys, log) = keys_changed_by_a_reload(extra).await;
        assert_eq!(keys, expected, "{extra:?}:\n{log}");
        assert!(!log.contains(PASSWORD), "{log}");
    }
}
