//! Runs one command as a process-group leader: clean environment, optional stdin, captured output,
//! timeout and cancellation that kill the whole group (SIGTERM, then SIGKILL), and what the command
//! leaves running in its group ended too when it exits (unless the hook keeps it).
//!
//! The runner knows nothing of HTTP, hooks or templates: it takes a fully rendered [`CommandSpec`]
//! and returns a [`Finished`] record. A command that cannot start is an outcome, never an error.

mod files;
mod kill;
mod output;
#[cfg(test)]
mod tests;

pub use output::{CappedOutput, OutputSink, StreamKind};

use std::fmt;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::io::AsyncWriteExt;
use tokio::process::{ChildStdin, Command};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::exec_limits::ExecLimits;
pub use files::remove_leftovers;
use files::JobFiles;

/// The shell that runs [`Program::Shell`] text.
pub(crate) const SHELL: &str = "/bin/sh";

/// How long to keep reading output after the command's main process has exited.
///
/// Output the command wrote just before exiting may still sit in the pipes, so the readers get a
/// moment to reach EOF. But a background process that outlived the command inherits the pipes and
/// may hold them open indefinitely; it must not keep the job from ending, so after this grace the
/// readers are abandoned.
const OUTPUT_GRACE: Duration = Duration::from_secs(1);

/// What to execute.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Program {
    /// Text run by `/bin/sh -c <text>`.
    Shell(String),
    /// `argv[0]` run directly (no shell); each element is passed as exactly one argument.
    Argv(Vec<String>),
}

/// A fully rendered command, ready to run.
#[derive(Clone)]
pub struct CommandSpec {
    pub program: Program,
    pub workdir: PathBuf,
    /// The complete environment of the command; nothing is inherited from hookrunner.
    pub env: Vec<(String, String)>,
    /// `None`: stdin is `/dev/null`. `Some`: written to the command's stdin, which is then closed.
    pub stdin: Option<Bytes>,
    /// Files written before the command starts (mode 0600, in a private folder of their own
    /// under `files_dir`), each path given in the variable of its name; all removed when the run
    /// ends, however it ends.
    pub files: Vec<(String, Bytes)>,
    /// Where the private folder of `files` is made.
    pub files_dir: PathBuf,
    /// How long the command may run before its process group is terminated.
    pub timeout: Duration,
    /// How long to wait after SIGTERM before sending SIGKILL.
    pub kill_after: Duration,
    /// Whether what the command leaves running in its group when its main process exits may
    /// outlive it. When false, the leftovers get SIGTERM, then SIGKILL after `kill_after`.
    pub keep_background: bool,
}

impl fmt::Debug for CommandSpec {
    /// Environment values and stdin may hold secrets: only names and sizes are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env_names: Vec<&str> = self.env.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("CommandSpec")
            .field("program", &self.program)
            .field("workdir", &self.workdir)
            .field("env_names", &env_names)
            .field("stdin_len", &self.stdin.as_ref().map(Bytes::len))
            .field(
                "files",
                &self.files.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            )
            .field("timeout", &self.timeout)
            .field("kill_after", &self.kill_after)
            .field("keep_background", &self.keep_background)
            .finish()
    }
}

/// How a command ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The command exited on its own with this status code.
    Exited { code: i32 },
    /// The command was killed by this signal, not sent by the runner.
    Signalled { signal: i32 },
    /// The timeout passed; the process group was terminated.
    TimedOut,
    /// The cancellation token fired; the process group was terminated (or never started).
    Cancelled,
    /// The command could not be started (or, very rarely, could not be waited for).
    CouldNotStart { reason: String },
}

/// The record of one run.
#[derive(Clone, Debug)]
pub struct Finished {
    pub outcome: Outcome,
    /// Wall time from the spawn attempt until the run (including reading output) ended.
    pub duration: Duration,
}

/// The system's limits on one `exec`, read once at start. When `sysconf(ARG_MAX)` cannot tell,
/// only the per-value limit is checked before the spawn, and the kernel judges the total.
pub fn exec_limits() -> ExecLimits {
    let arg_max = match nix::unistd::sysconf(nix::unistd::SysconfVar::ARG_MAX) {
        Ok(Some(arg_max)) => usize::try_from(arg_max).ok(),
        Ok(None) | Err(_) => None,
    };
    ExecLimits {
        arg_max: arg_max.unwrap_or(usize::MAX),
    }
}

/// Runs `spec`, passing its output to `sink` as it arrives, until it exits, times out or `cancel`
/// fires. Never panics on process or IO failures: those become [`Outcome::CouldNotStart`].
///
/// If `cancel` has already fired, the command is not started and the outcome is `Cancelled`.
pub async fn run(
    spec: CommandSpec,
    sink: Arc<dyn OutputSink>,
    cancel: CancellationToken,
) -> Finished {
    let started = Instant::now();
    let outcome = execute(spec, sink, cancel).await;
    let duration = started.elapsed();
    tracing::debug!(?outcome, ?duration, "command finished");
    Finished { outcome, duration }
}

/// How waiting for the main process ended.
enum Ended {
    Exited(io::Result<ExitStatus>),
    TimedOut,
    Cancelled,
}

async fn execute(
    spec: CommandSpec,
    sink: Arc<dyn OutputSink>,
    cancel: CancellationToken,
) -> Outcome {
    let CommandSpec {
        program,
        workdir,
        mut env,
        stdin,
        files,
        files_dir,
        timeout,
        kill_after,
        keep_background,
    } = spec;
    if cancel.is_cancelled() {
        return Outcome::Cancelled;
    }
    // Declared before the child, so the files outlive it and are removed once the run is over.
    let written = tokio::task::spawn_blocking(move || {
        JobFiles::write(&files_dir, &files).map_err(|error| (error, files_dir))
    })
    .await;
    let _job_files = match written {
        Err(error) => {
            return Outcome::CouldNotStart {
                reason: format!("cannot write the command's `run.files`: {error}"),
            }
        }
        Ok(Ok(written)) => {
            env.extend(written.variables());
            written
        }
        Ok(Err((error, files_dir))) => {
            return Outcome::CouldNotStart {
                reason: format!(
                    "cannot write the command's `run.files` under {}: {error}",
                    files_dir.display()
                ),
            }
        }
    };
    let (mut command, name) = match build_command(&program) {
        Ok(built) => built,
        Err(reason) => return Outcome::CouldNotStart { reason },
    };
    command
        .env_clear()
        .envs(env)
        .current_dir(&workdir)
        .process_group(0)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());

    if cancel.is_cancelled() {
        tracing::debug!(program = %name, "cancelled before the command started");
        return Outcome::Cancelled;
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            let reason = start_failure(&name, &workdir, &e);
            tracing::debug!(%reason, "command could not start");
            return Outcome::CouldNotStart { reason };
        }
    };
    // The child called setpgid(0, 0), so its pid is its process group id. `id()` is only `None`
    // once the child has been reaped, which cannot have happened yet.
    let Some(pgid) = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw)
    else {
        let _ = child.start_kill();
        let _ = child.wait().await;
        return Outcome::CouldNotStart {
            reason: format!("cannot start `{name}`: no process id"),
        };
    };
    tracing::debug!(program = %name, pid = pgid.as_raw(), "command started");
    // If this future is dropped before the command ends, the group is killed rather than left
    // running unsupervised. Declared after `child` so it runs before the child is dropped (and
    // possibly reaped), while the group id cannot have been reused.
    let mut group_guard = KillGroupOnDrop(Some(pgid));

    let mut readers = AbortOnDrop(Vec::new());
    if let Some(pipe) = child.stdout.take() {
        let task = output::drain(pipe, StreamKind::Stdout, Arc::clone(&sink));
        readers.0.push(tokio::spawn(task));
    }
    if let Some(pipe) = child.stderr.take() {
        let task = output::drain(pipe, StreamKind::Stderr, Arc::clone(&sink));
        readers.0.push(tokio::spawn(task));
    }
    let mut writer = AbortOnDrop(Vec::new());
    if let (Some(pipe), Some(data)) = (child.stdin.take(), stdin) {
        writer.0.push(tokio::spawn(feed_stdin(pipe, data)));
    }

    let ended = tokio::select! {
        biased;
        status = child.wait() => Ended::Exited(status),
        () = cancel.cancelled() => Ended::Cancelled,
        () = tokio::time::sleep(timeout) => Ended::TimedOut,
    };
    let outcome = match ended {
        Ended::Exited(Ok(status)) => {
            // The main process's exit decides the outcome; what it left behind is ended (and
            // waited for) first, so a `queue` hook's next job never runs beside it.
            if !keep_background {
                kill::end_leftovers(pgid, kill_after).await;
            }
            outcome_of(status)
        }
        Ended::Exited(Err(e)) => {
            tracing::debug!(pid = pgid.as_raw(), error = %e, "waiting for the command failed");
            kill::signal_group(pgid, Signal::SIGKILL);
            Outcome::CouldNotStart {
                reason: format!("cannot wait for `{name}`: {e}"),
            }
        }
        Ended::TimedOut => {
            kill::terminate_group(&mut child, pgid, kill_after, "timed out").await;
            Outcome::TimedOut
        }
        Ended::Cancelled => {
            kill::terminate_group(&mut child, pgid, kill_after, "cancelled").await;
            Outcome::Cancelled
        }
    };
    group_guard.0 = None;

    let deadline = tokio::time::Instant::now() + OUTPUT_GRACE;
    for reader in &mut readers.0 {
        if tokio::time::timeout_at(deadline, &mut *reader)
            .await
            .is_err()
        {
            tracing::debug!(
                pid = pgid.as_raw(),
                "output still open after the command ended"
            );
            reader.abort();
            // Wait for the abort to take effect, so no output reaches the sink after we return.
            let _ = reader.await;
        }
    }
    for task in &mut writer.0 {
        task.abort();
        let _ = task.await;
    }
    outcome
}

/// The command to spawn and the program name used in messages.
fn build_command(program: &Program) -> Result<(Command, String), String> {
    match program {
        Program::Shell(text) => {
            let mut command = Command::new(SHELL);
            command.arg("-c").arg(text);
            Ok((command, SHELL.to_owned()))
        }
        Program::Argv(argv) => match argv.split_first() {
            None => Err("cannot start an empty command: no program given".to_owned()),
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args);
                Ok((command, printable(program)))
            }
        },
    }
}

/// `s` with control characters (NUL included) escaped, fit for a one-line message.
fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The reason a spawn failed. A missing working directory is reported as such: the OS error alone
/// ("No such file or directory") would wrongly suggest the program is missing.
fn start_failure(name: &str, workdir: &Path, error: &io::Error) -> String {
    let dir = workdir.display();
    match std::fs::metadata(workdir) {
        Err(e) => format!("cannot start `{name}`: working directory `{dir}`: {e}"),
        Ok(meta) if !meta.is_dir() => {
            format!("cannot start `{name}`: working directory `{dir}` is not a directory")
        }
        Ok(_) => format!("cannot start `{name}`: {error}"),
    }
}

fn outcome_of(status: ExitStatus) -> Outcome {
    match (status.code(), status.signal()) {
        (Some(code), _) => Outcome::Exited { code },
        (None, Some(signal)) => Outcome::Signalled { signal },
        // A reaped process either exited or was killed by a signal; this is not reached.
        (None, None) => Outcome::Exited { code: -1 },
    }
}

/// Writes `data` to the command's stdin, then closes it. A command that exits (or closes stdin)
/// without reading everything is fine: the broken pipe is ignored.
async fn feed_stdin(mut pipe: ChildStdin, data: Bytes) {
    match pipe.write_all(&data).await {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        Err(e) => tracing::debug!(error = %e, "writing the command's stdin failed"),
    }
    drop(pipe);
}

/// Aborts the tasks when dropped, so that a dropped run leaves no reader or writer behind.
struct AbortOnDrop(Vec<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// SIGKILLs the process group when dropped while still holding its id.
struct KillGroupOnDrop(Option<Pid>);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.take() {
            tracing::debug!(
                pid = pgid.as_raw(),
                "run dropped while the command was running"
            );
            kill::signal_group(pgid, Signal::SIGKILL);
        }
    }
}
