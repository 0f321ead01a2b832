//! The `command` target: the notification's argv run like a hook's command (a clean environment,
//! its own process group), with the job's `HOOK_*` variables and its body on stdin.

use std::path::Path;

use base64::Engine as _;

use crate::command::JobCommand;
use crate::job::{Job, JobView};
use crate::runner::Program;

/// How long a notification command may run before its process group is ended.
pub const TIMEOUT_MS: u64 = 60_000;
/// The grace between SIGTERM and SIGKILL.
pub const KILL_AFTER_MS: u64 = 10_000;
/// How much of its output is kept (for the delivery's log line).
pub const MAX_OUTPUT: u64 = 64 << 10;

/// `HOOK_ID`, `HOOK_JOB_ID`, `HOOK_STATUS`, `HOOK_EXIT_CODE` and `HOOK_DURATION_MS`; the last two
/// are empty when the job has none (it was killed by a signal, or never ran).
pub fn env(job: &Job) -> Vec<(String, String)> {
    let outcome = job.outcome();
    let exit_code = outcome.and_then(|outcome| outcome.exit_code);
    let duration_ms = outcome.and_then(|outcome| outcome.duration_ms);
    let text = |value: Option<String>| value.unwrap_or_default();
    vec![
        ("HOOK_ID".into(), job.hook.clone()),
        ("HOOK_JOB_ID".into(), job.id.to_string()),
        ("HOOK_STATUS".into(), job.status().as_str().into()),
        (
            "HOOK_EXIT_CODE".into(),
            text(exit_code.map(|code| code.to_string())),
        ),
        (
            "HOOK_DURATION_MS".into(),
            text(duration_ms.map(|ms| ms.to_string())),
        ),
    ]
}

/// The job body, as `GET /jobs/{id}` shows it, followed by a newline.
pub fn stdin(job: &Job, include_output: bool, at_ms: i64) -> Vec<u8> {
    let mut body = serde_json::to_vec(&JobView::of(job, include_output, at_ms))
        .expect("a job body serializes");
    body.push(b'\n');
    body
}

/// The command to run for a notification: `argv` directly (no shell), in `workdir`, with `PATH`,
/// `HOME`, `LANG` and `TZ` from the server when it runs ([`JobCommand::to_spec`]) and the
/// notification's `env` (see [`env`]); nothing else of the server's environment. `stdin` is what
/// [`stdin`] made.
pub fn build(
    argv: &[String],
    workdir: &Path,
    env: &[(String, String)],
    stdin: &[u8],
) -> JobCommand {
    JobCommand {
        program: Program::Argv(argv.to_vec()),
        workdir: workdir.to_path_buf(),
        env: env.to_vec(),
        passthrough: Vec::new(),
        stdin: Some(base64::engine::general_purpose::STANDARD.encode(stdin)),
        files: Vec::new(),
        timeout_ms: TIMEOUT_MS,
        kill_after_ms: KILL_AFTER_MS,
        max_output: MAX_OUTPUT,
        keep_background: false,
        run_after_restart: true,
        retry: None,
    }
}
