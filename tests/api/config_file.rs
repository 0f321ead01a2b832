//! The config file as the real binary reads it: literal secrets are named by place only, in
//! `check` and in the server's log, and a reload logs only the changes the file really made.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::helpers::{check_file, serve_binary, Binary};

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
    let (code, stdout, stderr) = check_file(&file);
    assert_eq!(code, 0);
    assert_names_places_not_values(&format!("{stdout}{stderr}"));
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
    serve_binary(&dir.join("hooks.yaml"), &[], extra, |_| {}).await
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

/// `count` hooks as people write them: a literal secret (so a warning each), a `when` with two
/// leaves and a command with an env value. (No regex: in a debug build, compiling one costs more
/// than the rest of the hook, which would hide the cost that grows with the file.)
fn realistic_hooks(count: usize) -> String {
    let mut text = String::from("server: {max_jobs: 4}\nhooks:\n");
    for index in 0..count {
        text += &format!(
            "  - id: deploy-{index}\n    signature:\n      github: {{secret: literal-{index}}}\n    when:\n      all:\n        - header.X-GitHub-Event: push\n        - payload.ref: {{in: [refs/heads/main, \"refs/heads/release-{index}\"]}}\n    run:\n      command: [./deploy.sh, \"{{{{ payload.after }}}}\"]\n      env: {{SITE: \"site-{index}\"}}\n"
        );
    }
    text
}

/// `count` hooks with three problems each: two unknown keys and a duration without a unit.
fn broken_hooks(count: usize) -> String {
    let mut text = String::from("hooks:\n");
    for index in 0..count {
        text += &format!(
            "  - id: broken-{index}\n    signature: none\n    when: {{payload.ref: {{matchs: \"(\"}}}}\n    run: {{comand: [x], timeout: 5}}\n"
        );
    }
    text
}

/// A file with `count` problems, one a line: a list of addresses that are not addresses.
fn many_problems(count: usize) -> String {
    let mut text = String::from("server:\n  trusted_proxies:\n");
    for _ in 0..count {
        text += "    - not-an-address\n";
    }
    text + "hooks: []\n"
}

/// Flow sequences nested `depth` deep inside a hook's `when`.
fn nested(depth: usize) -> String {
    format!(
        "hooks:\n  - id: a\n    signature: none\n    run: {{command: [x]}}\n    when: {}{}\n",
        "[".repeat(depth),
        "]".repeat(depth)
    )
}

/// The CPU time this thread has used, in seconds: unlike the wall clock, it does not grow while
/// other tests or processes have the CPU.
fn thread_cpu_seconds() -> f64 {
    let time = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .expect("the thread's CPU clock");
    time.tv_sec() as f64 + time.tv_nsec() as f64 / 1e9
}

/// One load of `text`, with its problems rendered as `check` prints them, in CPU seconds.
fn load_time(text: &str) -> f64 {
    let file = Path::new("/etc/hookrunner/hooks.yaml");
    let started = thread_cpu_seconds();
    let printed = match hookrunner::config::load_str(text, file, &|_| None) {
        Ok(config) => config.warnings.concat(),
        Err(errors) => errors.render(),
    };
    let elapsed = thread_cpu_seconds() - started;
    assert!(!printed.is_empty(), "every case has something to say");
    elapsed
}

/// The shortest of several loads of each text, taken in turn, so what is left of a busy spell of
/// the machine (caches shared with the other tests) slows both sides alike.
fn fastest_loads(small: &str, large: &str) -> (f64, f64) {
    (0..7).fold((f64::INFINITY, f64::INFINITY), |(s, l), _| {
        (s.min(load_time(small)), l.min(load_time(large)))
    })
}

#[test]
fn loading_is_linear_in_the_size_of_the_file_valid_or_broken() {
    let cases: [(&str, fn(usize) -> String, usize); 4] = [
        ("realistic hooks", realistic_hooks, 50),
        ("broken hooks", broken_hooks, 100),
        ("problems", many_problems, 2_000),
        ("nested flow sequences", nested, 2_000),
    ];
    let mut slow = Vec::new();
    for (what, make, small) in cases {
        let (small_text, large_text) = (make(small), make(10 * small));
        let (small_time, large_time) = fastest_loads(&small_text, &large_text);
        let ratio = large_time / small_time;
        let line = format!(
            "{what}: {small} in {small_time:.4}s, {} in {large_time:.4}s ({ratio:.1}x)",
            10 * small
        );
        eprintln!("{line}");
        // Ten times the text in at most fifteen times the time; quadratic work takes about a hundred.
        if ratio >= 15.0 {
            slow.push(line);
        }
    }
    assert!(slow.is_empty(), "not linear:\n{}", slow.join("\n"));
}
