//! What a command gets and what it leaves behind: values that fit an `exec`, no processes after the
//! job, descriptors 0, 1 and 2 only, and no way into the server through `/proc`.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

use crate::helpers::{process_is_gone, read_when_written, Binary, TestApp};

/// Waits until `pid` is gone, failing after a deadline.
async fn wait_until_gone(pid: i32, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !process_is_gone(pid) {
        assert!(Instant::now() < deadline, "{what} {pid} is still running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn pid_in(app: &TestApp, name: &str) -> i32 {
    let text = read_when_written(&app.path(name)).await;
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("`{name}` holds no pid: {text:?}"))
}

#[tokio::test]
async fn a_value_over_128_kib_is_refused_with_413_and_nothing_is_recorded_or_run() {
    let app = TestApp::spawn(
        r#"
server: {admin_token: "admin-s3cret"}
hooks:
  - id: env
    signature: none
    max_body: 1MiB
    run:
      shell: 'touch ran-env'
      workdir: $DIR
      env: {VALUE: "{{ payload.value }}"}
  - id: argv
    signature: none
    max_body: 1MiB
    run:
      command: ["/bin/sh", "-c", "touch ran-argv", "sh", "--value={{ payload.value }}"]
      workdir: $DIR
  - id: stdin
    signature: none
    max_body: 1MiB
    run:
      shell: 'wc -c > stdin-bytes'
      workdir: $DIR
      stdin: payload
"#,
    )
    .await;
    let body = json!({"value": "x".repeat(200 << 10)}).to_string();

    for (hook, names) in [
        ("env", ["`run.env.VALUE`", "`payload.value`"]),
        ("argv", ["`run.command[4]`", "`payload.value`"]),
    ] {
        let answer = app.post_hook(hook, body.clone(), &[]).await;
        assert_eq!(answer.status, 413, "{hook}: {:?}", answer.body);
        assert_eq!(answer.body["error"], "value_too_large", "{hook}");
        let message = answer.body["message"].as_str().unwrap();
        for name in names {
            assert!(message.contains(name), "{hook}: {message}");
        }
    }
    let admin = [("Authorization", "Bearer admin-s3cret")];
    let list = app.request(reqwest::Method::GET, "/jobs", "", &admin).await;
    assert_eq!(list.status, 200, "{:?}", list.body);
    assert_eq!(list.body["jobs"], json!([]), "a refused request left a job");

    // The body on stdin is not an argument: the same size runs.
    let answer = app.post_hook("stdin", body.clone(), &[]).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let counted = read_when_written(&app.path("stdin-bytes")).await;
    assert_eq!(counted.trim(), body.len().to_string());
    assert!(!app.path("ran-env").exists() && !app.path("ran-argv").exists());
}

const BACKGROUND: &str = r#"
hooks:
  - id: leaves-sleep
    signature: none
    run:
      shell: 'sleep 30 & echo $! > bg.pid'
      workdir: $DIR
  - id: leaves-stubborn
    signature: none
    run:
      shell: |
        sh -c 'trap "" TERM; echo $$ > stubborn.pid; exec sleep 30' &
        until [ -s stubborn.pid ]; do sleep 0.01; done
      workdir: $DIR
      kill_after: 300ms
"#;

#[tokio::test]
async fn a_background_process_is_ended_when_its_job_ends() {
    let app = TestApp::spawn(BACKGROUND).await;
    let answer = app.post_hook("leaves-sleep", "", &[]).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body["status"], "succeeded");
    let pid = pid_in(&app, "bg.pid").await;
    wait_until_gone(pid, "the background `sleep`").await;
}

#[tokio::test]
async fn keep_background_lets_a_background_process_outlive_its_job() {
    let app = TestApp::spawn(
        r#"
hooks:
  - id: keeps-sleep
    signature: none
    run:
      shell: 'sleep 30 & echo $! > kept.pid'
      workdir: $DIR
      keep_background: true
"#,
    )
    .await;
    let answer = app.post_hook("keeps-sleep", "", &[]).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let pid = pid_in(&app, "kept.pid").await;
    let alive = !process_is_gone(pid);
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    assert!(alive, "the kept background `sleep` {pid} was ended");
}

#[tokio::test]
async fn a_background_process_that_ignores_sigterm_is_killed_after_kill_after() {
    let app = TestApp::spawn(BACKGROUND).await;
    let started = Instant::now();
    let answer = app.post_hook("leaves-stubborn", "", &[]).await;
    let took = started.elapsed();
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body["status"], "succeeded");
    let pid = pid_in(&app, "stubborn.pid").await;
    wait_until_gone(pid, "the background process that ignores SIGTERM").await;
    // It ignores SIGTERM, so only the SIGKILL sent `kill_after` later can have ended it, and the
    // job waited for that.
    assert!(
        took >= Duration::from_millis(300),
        "answered after {took:?}"
    );
}

/// Starts the real binary on `hooks` in `dir`, through `wrapper`, and waits until it is ready.
async fn serve_binary(dir: &Path, hooks: &str, wrapper: &[&str]) -> (Binary, String) {
    let config = dir.join("hooks.yaml");
    std::fs::write(
        &config,
        format!("server:\n  state_dir: state\nhooks:\n{hooks}"),
    )
    .unwrap();
    crate::helpers::serve_binary(&config, wrapper, &[], |command| {
        command
            .env("RUST_LOG", "warn")
            .env("HOOKRUNNER_TEST_SECRET", "do-not-leak");
    })
    .await
}

/// The stdout of a `wait` hook that includes its output.
async fn output_of(address: &str, hook: &str) -> String {
    let answer = reqwest::Client::new()
        .post(format!("{address}/hooks/{hook}"))
        .send()
        .await
        .unwrap();
    let status = answer.status();
    let body: Value = answer.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    body["stdout"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_command_gets_descriptors_0_1_and_2_only() {
    let dir = tempfile::tempdir().unwrap();
    let hooks = r#"
  - id: fds
    signature: none
    run: {shell: 'ls -l /proc/self/fd'}
    response: {include_output: true}
"#;
    // The shell hands the server a descriptor it did not open, as a supervisor might.
    let wrapper = ["/bin/sh", "-c", "exec 7</etc/hostname; exec \"$@\"", "sh"];
    let (binary, address) = serve_binary(dir.path(), hooks, &wrapper).await;
    let listing = output_of(&address, "fds").await;
    // `ls` opens `/proc/self/fd` itself to list it; every other descriptor came from the server.
    let fds: Vec<&str> = listing
        .lines()
        .filter_map(|line| line.split_once(" -> "))
        .filter(|(_, target)| !target.starts_with("/proc/"))
        .filter_map(|(left, _)| left.rsplit(' ').next())
        .collect();
    assert_eq!(fds, ["0", "1", "2"], "{listing}\n{}", binary.log());
}

#[tokio::test]
async fn a_command_cannot_read_the_server_environment_through_proc() {
    let dir = tempfile::tempdir().unwrap();
    let hooks = r#"
  - id: peek
    signature: none
    run:
      shell: |
        if cat /proc/$PPID/environ > /dev/null 2>&1; then echo parent:readable; else echo parent:denied; fi
        if cat /proc/self/environ > /dev/null; then echo self:readable; fi
    response: {include_output: true}
"#;
    // Root reads any process's environment (CAP_SYS_PTRACE): run the server as `nobody` then.
    let unprivileged = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ];
    let wrapper: &[&str] = if nix::unistd::geteuid().is_root() {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        &unprivileged
    } else {
        &[]
    };
    let (binary, address) = serve_binary(dir.path(), hooks, wrapper).await;
    let output = output_of(&address, "peek").await;
    assert_eq!(output, "parent:denied\nself:readable\n", "{}", binary.log());
}
