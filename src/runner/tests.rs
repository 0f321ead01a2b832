//! Tests of the runner against real processes (`/bin/sh` and coreutils), no mocks.

use super::*;

use std::sync::Mutex;

use nix::errno::Errno;
use nix::sys::signal::{kill, killpg};

const PATH: &str = "/usr/bin:/bin";
/// Upper bound for runs that must end quickly (well under the 30 s sleeps they interrupt).
const QUICK: Duration = Duration::from_secs(5);

fn spec(program: Program, workdir: &Path) -> CommandSpec {
    CommandSpec {
        program,
        workdir: workdir.to_path_buf(),
        env: vec![("PATH".to_owned(), PATH.to_owned())],
        stdin: None,
        files: Vec::new(),
        files_dir: workdir.join("files"),
        timeout: Duration::from_secs(20),
        kill_after: Duration::from_secs(2),
        keep_background: false,
    }
}

fn sh(text: &str) -> Program {
    Program::Shell(text.to_owned())
}

fn argv(args: &[&str]) -> Program {
    Program::Argv(args.iter().map(|a| (*a).to_owned()).collect())
}

async fn run_captured(spec: CommandSpec) -> (Finished, Arc<CappedOutput>) {
    let out = Arc::new(CappedOutput::new(1 << 20));
    let finished = run(spec, out.clone(), CancellationToken::new()).await;
    (finished, out)
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("utf-8 output")
}

fn could_not_start_reason(finished: &Finished) -> &str {
    match &finished.outcome {
        Outcome::CouldNotStart { reason } => reason,
        other => panic!("expected CouldNotStart, got {other:?}"),
    }
}

/// Reads a pid written by a test command; 0 if the file is missing or garbled.
fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Gone, or a zombie waiting to be reaped by init (which may not be quick in a container).
fn is_dead(pid: i32) -> bool {
    match kill(Pid::from_raw(pid), None) {
        Err(Errno::ESRCH) => true,
        Err(_) => false,
        Ok(()) => std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| {
                stat.rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(true),
    }
}

async fn wait_dead(pid: i32) -> bool {
    let deadline = Instant::now() + QUICK;
    while Instant::now() < deadline {
        if is_dead(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    is_dead(pid)
}

/// On drop (also when an assertion failed), SIGKILLs the process group, or the process, whose id
/// a test command wrote to `path`, so that no test leaves a 30 s sleep behind.
struct Cleanup {
    path: PathBuf,
    group: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let pid = read_pid(&self.path);
        if pid > 1 {
            let pid = Pid::from_raw(pid);
            let _ = if self.group {
                killpg(pid, Signal::SIGKILL)
            } else {
                kill(pid, Signal::SIGKILL)
            };
        }
    }
}

#[tokio::test]
async fn shell_command_output_reaches_both_streams() {
    let dir = tempfile::tempdir().unwrap();
    let (finished, out) = run_captured(spec(sh("echo out; echo err >&2"), dir.path())).await;
    assert_eq!(finished.outcome, Outcome::Exited { code: 0 });
    assert_eq!(text(out.stdout()), "out\n");
    assert_eq!(text(out.stderr()), "err\n");
    assert!(!out.truncated());
}

#[tokio::test]
async fn non_zero_exit_code_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (finished, _) = run_captured(spec(sh("exit 3"), dir.path())).await;
    assert_eq!(finished.outcome, Outcome::Exited { code: 3 });
}

#[tokio::test]
async fn death_by_signal_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (finished, _) = run_captured(spec(sh("kill -KILL $$"), dir.path())).await;
    assert_eq!(finished.outcome, Outcome::Signalled { signal: 9 });
}

#[tokio::test]
async fn argv_elements_are_single_arguments_without_shell() {
    let dir = tempfile::tempdir().unwrap();
    let tricky = "a  b $(touch x) `touch y` \"dq\" 'sq' ; echo injected | cat > z";
    let (finished, out) =
        run_captured(spec(argv(&["/usr/bin/printf", "%s", tricky]), dir.path())).await;
    assert_eq!(finished.outcome, Outcome::Exited { code: 0 });
    assert_eq!(text(out.stdout()), tricky);
    for name in ["x", "y", "z"] {
        assert!(!dir.path().join(name).exists(), "{name} was created");
    }
}

#[tokio::test]
async fn environment_is_exactly_the_given_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = spec(argv(&["/usr/bin/env"]), dir.path());
    spec.env = vec![("A".to_owned(), "1".to_owned())];
    let (finished, out) = run_captured(spec).await;
    assert_eq!(finished.outcome, Outcome::Exited { code: 0 });
    assert_eq!(text(out.stdout()), "A=1\n");
}

#[tokio::test]
async fn command_runs_in_workdir() {
    let dir = tempfile::tempdir().unwrap();
    let (finished, out) = run_captured(spec(argv(&["/bin/pwd", "-P"]), dir.path())).await;
    assert_eq!(finished.outcome, Outcome::Exited { code: 0 });
    let expected = dir.path().canonicalize().unwrap();
    assert_eq!(text(out.stdout()), format!("{}\n", expected.display()));
}

#[tokio::test]
async fn stdin_reaches_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = spec(argv(&["/usr/bin/cat"]), dir.path());
    spec.stdin = Some(Bytes::from_static(b"hello\nworld"));
    let (finished, out) = run_captured(spec).await;
    assert_eq!(finished.outcome, Outcome::Exited { code: 0 });
    assert_eq!(text(out.stdout()), "hello\nworld");
}

#[tokio::test]
async fn no_stdin_means_dev_null() {
    let dir = tempfile::tempdir().unwrap();
    let (finished, out) = run_captured(spec(argv(&["/usr/bin/cat"]), dir.path())).await;
    assert_eq!(finished.outcome, Outcome::Exited { code: 0 });
    assert!(out.stdout().is_empty());
}

#[tokio::test]
async fn unread_stdin_and_heavy_output_do_not_deadlock() {
    // The command never reads its stdin and writes far more than a pipe holds: stdin must be fed
    // while output is drained, or both sides block until the timeout.
    let dir = tempfile::tempdir().unwrap();
    let size = 4 << 20;
    let mut spec = spec(
        argv(&["/usr/bin/head", "-c", &size.to_string(), "/dev/zero"]),
        dir.path(),
    );
    spec.stdin = Some(Bytes::from(vec![b'x'; size]));
    spec.timeout = QUICK;
    let (finished, out) = run_captured(spec).await;
    assert_eq!(finished.outcome, Outcome::Exited { code: 0 });
    assert_eq!(out.total_bytes(), size as u64);
}

#[tokio::test]
async fn timeout_kills_the_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pidfile");
    let _cleanup = Cleanup {
        path: pidfile.clone(),
        group: false,
    };
    let mut spec = spec(sh("sleep 30 & echo $! > pidfile; sleep 30"), dir.path());
    spec.timeout = Duration::from_millis(300);
    spec.kill_after = Duration::from_millis(300);
    let (finished, _) = run_captured(spec).await;
    assert_eq!(finished.outcome, Outcome::TimedOut);
    assert!(finished.duration >= Duration::from_millis(300));
    assert!(finished.duration < QUICK, "took {:?}", finished.duration);
    let grandchild = read_pid(&pidfile);
    assert!(grandchild > 1, "the command did not write its pid file");
    assert!(
        wait_dead(grandchild).await,
        "background process {grandchild} survived"
    );
}

#[tokio::test]
async fn sigterm_ignored_leads_to_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pgid");
    let _cleanup = Cleanup {
        path: pidfile.clone(),
        group: true,
    };
    let mut spec = spec(sh("trap '' TERM; echo $$ > pgid; sleep 30"), dir.path());
    spec.timeout = Duration::from_millis(300);
    spec.kill_after = Duration::from_millis(300);
    let (finished, _) = run_captured(spec).await;
    assert_eq!(finished.outcome, Outcome::TimedOut);
    // Only reaching SIGKILL after `kill_after` ends a command that ignores SIGTERM.
    assert!(
        finished.duration >= Duration::from_millis(600),
        "took {:?}",
        finished.duration
    );
    assert!(finished.duration < QUICK, "took {:?}", finished.duration);
}

#[tokio::test]
async fn group_members_ignoring_sigterm_are_killed_after_the_leader() {
    // The leader dies of SIGTERM at once; a background member ignores it. The final SIGKILL to
    // the group after reaping the leader, not the `kill_after` escalation, must end it.
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pidfile");
    let _cleanup = Cleanup {
        path: dir.path().join("pgid"),
        group: true,
    };
    let text = "echo $$ > pgid; sh -c \"trap '' TERM; sleep 30\" & echo $! > pidfile; sleep 30";
    let mut spec = spec(sh(text), dir.path());
    spec.timeout = Duration::from_millis(300);
    spec.kill_after = QUICK;
    let (finished, _) = run_captured(spec).await;
    assert_eq!(finished.outcome, Outcome::TimedOut);
    assert!(finished.duration < QUICK, "took {:?}", finished.duration);
    let member = read_pid(&pidfile);
    assert!(member > 1, "the command did not write its pid file");
    assert!(wait_dead(member).await, "group member {member} survived");
}

#[tokio::test]
async fn leftovers_are_ended_and_the_main_exit_decides_the_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pidfile");
    let _cleanup = Cleanup {
        path: pidfile.clone(),
        group: false,
    };
    let spec = spec(sh("sleep 30 & echo $! > pidfile; exit 3"), dir.path());
    let (finished, _) = run_captured(spec).await;
    assert_eq!(finished.outcome, Outcome::Exited { code: 3 });
    let leftover = read_pid(&pidfile);
    assert!(leftover > 1, "the command did not write its pid file");
    assert!(is_dead(leftover), "leftover {leftover} outlived the run");
}

#[tokio::test]
async fn a_kept_background_process_does_not_hold_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pgid");
    let _cleanup = Cleanup {
        path: pidfile.clone(),
        group: true,
    };
    let mut spec = spec(sh("echo $$ > pgid; (sleep 30) & echo done"), dir.path());
    spec.keep_background = true;
    let (finished, out) = run_captured(spec).await;
    assert_eq!(finished.outcome, Outcome::Exited { code: 0 });
    assert_eq!(text(out.stdout()), "done\n");
    // The leftover holds the pipes, so the run waited out the grace, and not much longer.
    assert!(finished.duration >= OUTPUT_GRACE - Duration::from_millis(100));
    assert!(finished.duration < QUICK, "took {:?}", finished.duration);
    assert!(
        read_pid(&pidfile) > 1,
        "the command did not write its pid file"
    );
}

#[tokio::test]
async fn cancellation_terminates_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        trigger.cancel();
    });
    let out = Arc::new(CappedOutput::new(1024));
    let finished = run(
        spec(argv(&["/usr/bin/sleep", "30"]), dir.path()),
        out,
        cancel,
    )
    .await;
    assert_eq!(finished.outcome, Outcome::Cancelled);
    assert!(finished.duration >= Duration::from_millis(200));
    assert!(finished.duration < QUICK, "took {:?}", finished.duration);
}

#[tokio::test]
async fn cancelled_before_start_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cancel = CancellationToken::new();
    cancel.cancel();
    let out = Arc::new(CappedOutput::new(1024));
    let spec = spec(argv(&["/usr/bin/touch", "marker"]), dir.path());
    let finished = run(spec, out, cancel).await;
    assert_eq!(finished.outcome, Outcome::Cancelled);
    assert!(!dir.path().join("marker").exists());
}

/// Cancels its token when the command's output contains "ready".
struct CancelWhenReady {
    seen: Mutex<Vec<u8>>,
    cancel: CancellationToken,
}

impl OutputSink for CancelWhenReady {
    fn write(&self, _stream: StreamKind, data: &[u8]) {
        let mut seen = self.seen.lock().unwrap();
        seen.extend_from_slice(data);
        if seen.windows(5).any(|w| w == b"ready") {
            self.cancel.cancel();
        }
    }
}

#[tokio::test]
async fn output_is_delivered_while_the_command_runs() {
    let dir = tempfile::tempdir().unwrap();
    let cancel = CancellationToken::new();
    let sink = Arc::new(CancelWhenReady {
        seen: Mutex::new(Vec::new()),
        cancel: cancel.clone(),
    });
    let finished = run(spec(sh("echo ready; sleep 30"), dir.path()), sink, cancel).await;
    assert_eq!(finished.outcome, Outcome::Cancelled);
    assert!(finished.duration < QUICK, "took {:?}", finished.duration);
}

#[tokio::test]
async fn missing_program_could_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let (finished, out) = run_captured(spec(argv(&["./deploy.sh"]), dir.path())).await;
    assert_eq!(
        could_not_start_reason(&finished),
        "cannot start `./deploy.sh`: No such file or directory (os error 2)"
    );
    assert!(out.stdout().is_empty() && out.stderr().is_empty());
}

#[tokio::test]
async fn missing_workdir_could_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere");
    let (finished, _) = run_captured(spec(sh("true"), &missing)).await;
    let reason = could_not_start_reason(&finished);
    assert!(
        reason.starts_with("cannot start `/bin/sh`: working directory `"),
        "{reason}"
    );
    assert!(reason.contains("nowhere"), "{reason}");
    assert!(reason.contains("No such file or directory"), "{reason}");
}

#[tokio::test]
async fn non_executable_program_could_not_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("script"), "#!/bin/sh\necho hi\n").unwrap();
    let (finished, _) = run_captured(spec(argv(&["./script"]), dir.path())).await;
    assert_eq!(
        could_not_start_reason(&finished),
        "cannot start `./script`: Permission denied (os error 13)"
    );
}

#[tokio::test]
async fn empty_argv_and_nul_bytes_could_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let (finished, _) = run_captured(spec(Program::Argv(Vec::new()), dir.path())).await;
    assert!(could_not_start_reason(&finished).contains("empty command"));

    let (finished, _) = run_captured(spec(argv(&["/usr/bin/printf", "a\0b"]), dir.path())).await;
    let reason = could_not_start_reason(&finished);
    assert!(
        reason.starts_with("cannot start `/usr/bin/printf`: "),
        "{reason}"
    );
    assert!(reason.contains("nul byte"), "{reason}");
}

#[tokio::test]
async fn output_beyond_the_budget_is_counted_and_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let size: u64 = 5 * 1024 * 1024;
    let budget: u64 = 1024 * 1024;
    let out = Arc::new(CappedOutput::new(budget));
    let spec = spec(
        argv(&["/usr/bin/head", "-c", &size.to_string(), "/dev/zero"]),
        dir.path(),
    );
    let finished = run(spec, out.clone(), CancellationToken::new()).await;
    assert_eq!(finished.outcome, Outcome::Exited { code: 0 });
    let marker = CappedOutput::marker(budget);
    assert_eq!(
        marker,
        "\n[hookrunner: output truncated after 1048576 bytes]\n"
    );
    let stdout = out.stdout();
    assert_eq!(stdout.len() as u64, budget + marker.len() as u64);
    assert!(stdout.ends_with(marker.as_bytes()));
    assert!(out.stderr().is_empty());
    assert!(out.truncated());
    assert_eq!(out.total_bytes(), size);
}
