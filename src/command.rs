//! Turns a hook and a request into the command to run: program, arguments and a clean environment.
//! Payload text only ever becomes argv elements or environment values, never shell source.
//!
//! A [`JobCommand`] is what the job store keeps to run a queued job after a restart: everything
//! rendered from the request, but not the server's own environment (`PATH`, `HOME`, `LANG`, `TZ` and
//! `env_passthrough` are read again when the job starts, so they never reach the disk).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use rand::Rng;

use crate::backoff::Backoff;
use crate::config::{Hook, ProgramTemplate, ResponseMode, Retry, StatusSet, StdinMode};
use crate::job::Status;
use crate::request::RequestContext;
use crate::runner::{CommandSpec, Program};
use crate::template::RenderError;

/// Variables taken from the server's own environment for every command; nothing else is passed
/// unless the hook lists it in `env_passthrough`.
pub const BASE_ENV: &[&str] = &["PATH", "HOME", "LANG", "TZ"];

/// Why a command could not be built for a request.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("the value for {0} contains a NUL byte, which cannot be passed to a command")]
    NulByte(String),
    #[error("the value for {0} is not base64, which its `base64_decode` asks for")]
    NotBase64(String),
}

/// The rendered command of one job, as stored.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCommand {
    pub program: Program,
    pub workdir: PathBuf,
    /// `run.env` rendered, then the `HOOK_*` variables.
    pub env: Vec<(String, String)>,
    /// Names read from the server's environment when the job starts.
    pub passthrough: Vec<String>,
    /// The raw body, base64, when `stdin: payload`.
    pub stdin: Option<String>,
    /// `run.files` rendered: each variable's name and its file's content, base64.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<(String, String)>,
    pub timeout_ms: u64,
    pub kill_after_ms: u64,
    pub max_output: u64,
    /// Whether processes the command leaves in its group may outlive it (`run.keep_background`).
    #[serde(default)]
    pub keep_background: bool,
    /// Whether the job runs after a restart if it had not started: true for `async` jobs, whose
    /// 202 promised it. A `wait` or `stream` job's client is gone after a crash, so such a job is
    /// recorded `interrupted` instead, and its start never waits for the disk.
    #[serde(default = "yes")]
    pub run_after_restart: bool,
    /// How the job is run again after a run that failed (a hook's `retry` with more than one
    /// attempt): kept with the command, so whoever runs its next attempt, after a restart or on
    /// another instance, follows the policy the job was admitted with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPlan>,
}

/// A hook's `retry` as a job keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPlan {
    pub attempts: u32,
    pub backoff_ms: u64,
    pub max_delay_ms: u64,
    /// The statuses that call for another run, as [`Status::as_str`] writes them.
    pub on: Vec<String>,
}

impl RetryPlan {
    /// The plan of a hook's `retry`; `None` when it never runs a job twice.
    pub fn of(retry: &Retry) -> Option<RetryPlan> {
        (retry.attempts > 1).then(|| RetryPlan {
            attempts: retry.attempts,
            backoff_ms: retry.backoff.as_millis() as u64,
            max_delay_ms: retry.max_delay.as_millis() as u64,
            on: retry
                .on
                .iter()
                .map(|status| status.as_str().to_owned())
                .collect(),
        })
    }

    /// The wait before the next attempt of a job whose run number `attempt` (from 1) ended with
    /// `status`; `None` when the job ends with this run.
    pub fn next_delay(
        &self,
        status: Status,
        attempt: u32,
        random: &mut impl Rng,
    ) -> Option<Duration> {
        let on: Vec<Status> = self.on.iter().filter_map(|on| Status::parse(on)).collect();
        let retry = Retry {
            attempts: self.attempts,
            backoff: Duration::from_millis(self.backoff_ms),
            max_delay: Duration::from_millis(self.max_delay_ms),
            on: StatusSet::of(&on),
        };
        retry
            .retries(status, attempt)
            .then(|| Backoff::new(retry.backoff, retry.max_delay).delay(attempt, random))
    }
}

fn yes() -> bool {
    true
}

/// The part of a stored command that says whether the job runs again after a restart.
#[derive(Deserialize)]
struct Rerun {
    #[serde(default = "yes")]
    run_after_restart: bool,
}

impl JobCommand {
    /// What the job store keeps: the whole command for a job that runs again after a restart, and
    /// only that it does not for the others. Those are never re-run, so their rendered arguments
    /// and environment need not be written, nor kept at rest.
    pub fn to_stored(&self) -> String {
        if self.run_after_restart {
            serde_json::to_string(self).expect("a command serializes")
        } else {
            r#"{"run_after_restart":false}"#.to_owned()
        }
    }

    /// Replaces the value of the variable `name` set by the hook's request.
    pub fn set_env(&mut self, name: &str, value: &str) {
        for (set, old) in &mut self.env {
            if set == name {
                value.clone_into(old);
            }
        }
    }

    /// The command of a re-run of job `old` as the new job `new`: the same program, values and
    /// stdin as they were rendered, with `HOOK_JOB_ID` naming the new job and `HOOK_RERUN_OF` the
    /// old one. It follows `retry` (the hook's current policy) and runs after a restart, as an
    /// `async` job's does: nobody waits for a re-run.
    pub fn rerun(&self, new: &str, old: &str, retry: Option<RetryPlan>) -> JobCommand {
        let mut command = self.clone();
        command.set_env("HOOK_JOB_ID", new);
        command.env.retain(|(name, _)| name != "HOOK_RERUN_OF");
        command
            .env
            .push(("HOOK_RERUN_OF".to_owned(), old.to_owned()));
        command.retry = retry;
        command.run_after_restart = true;
        command
    }

    /// Reads back what [`to_stored`](JobCommand::to_stored) wrote: `None` for a job that does not
    /// run again after a restart.
    pub fn from_stored(text: &str) -> Result<Option<JobCommand>, serde_json::Error> {
        if !serde_json::from_str::<Rerun>(text)?.run_after_restart {
            return Ok(None);
        }
        serde_json::from_str(text).map(Some)
    }
}

impl fmt::Debug for JobCommand {
    /// Names only: environment values and stdin may carry payload text or secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.env.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("JobCommand")
            .field("workdir", &self.workdir)
            .field("env", &names)
            .field("passthrough", &self.passthrough)
            .field("stdin", &self.stdin.as_ref().map(String::len))
            .field(
                "files",
                &self.files.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl JobCommand {
    /// The runner's spec for run number `attempt` (from 1, `HOOK_ATTEMPT`): the server's `PATH`,
    /// `HOME`, `LANG`, `TZ` and passthrough variables first, then the job's own variables, which
    /// win.
    pub fn to_spec(
        &self,
        lookup_env: &dyn Fn(&str) -> Option<String>,
        attempt: u32,
    ) -> CommandSpec {
        let mut env: Vec<(String, String)> = Vec::new();
        let names = BASE_ENV
            .iter()
            .copied()
            .chain(self.passthrough.iter().map(String::as_str));
        for name in names {
            if let Some(value) = lookup_env(name) {
                env.retain(|(existing, _)| existing != name);
                env.push((name.to_string(), value));
            }
        }
        for (name, value) in &self.env {
            env.retain(|(existing, _)| existing != name);
            env.push((name.clone(), value.clone()));
        }
        env.retain(|(existing, _)| existing != "HOOK_ATTEMPT");
        env.push(("HOOK_ATTEMPT".to_owned(), attempt.to_string()));
        let stdin = self.stdin.as_ref().map(|encoded| {
            base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .unwrap_or_default()
                .into()
        });
        let files = self
            .files
            .iter()
            .map(|(name, encoded)| {
                let content = base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .unwrap_or_default();
                (name.clone(), content.into())
            })
            .collect();
        CommandSpec {
            program: self.program.clone(),
            workdir: self.workdir.clone(),
            env,
            stdin,
            files,
            files_dir: std::env::temp_dir(),
            timeout: Duration::from_millis(self.timeout_ms),
            kill_after: Duration::from_millis(self.kill_after_ms),
            keep_background: self.keep_background,
        }
    }
}

/// Renders the hook's command for this request.
pub fn build(hook: &Hook, request: &RequestContext) -> Result<JobCommand, BuildError> {
    let run = &hook.run;
    let program = match &run.program {
        ProgramTemplate::Shell(text) => Program::Shell(text.clone()),
        ProgramTemplate::Command(parts) => {
            let mut argv = Vec::with_capacity(parts.len());
            for (index, part) in parts.iter().enumerate() {
                let value = part.render(request)?;
                reject_nul(&value, || format!("`run.command[{index}]`"))?;
                argv.push(value);
            }
            Program::Argv(argv)
        }
    };

    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |name: &str, value: String| env.push((name.to_string(), value));
    for (name, template) in &run.env {
        let value = template.render(request)?;
        reject_nul(&value, || format!("`run.env.{name}`"))?;
        set(name, value);
    }
    let mut files = Vec::with_capacity(run.files.len());
    for file in &run.files {
        let value = file.value.render(request)?;
        let content = if file.base64_decode {
            base64::engine::general_purpose::STANDARD
                .decode(value.trim())
                .map_err(|_| BuildError::NotBase64(format!("`run.files.{}`", file.name)))?
        } else {
            value.into_bytes()
        };
        let encoded = base64::engine::general_purpose::STANDARD.encode(content);
        files.push((file.name.clone(), encoded));
    }
    set("HOOK_ID", hook.id.clone());
    set("HOOK_JOB_ID", request.job_id.clone());
    set("HOOK_REQUEST_ID", request.request_id.clone());
    set("HOOK_EVENT", request.event().unwrap_or_default());
    set("HOOK_DELIVERY_ID", request.delivery().unwrap_or_default());

    Ok(JobCommand {
        program,
        workdir: run.workdir.clone(),
        env,
        files,
        passthrough: run.env_passthrough.clone(),
        stdin: match run.stdin {
            StdinMode::None => None,
            StdinMode::Payload => {
                Some(base64::engine::general_purpose::STANDARD.encode(&request.body))
            }
        },
        timeout_ms: run.timeout.as_millis() as u64,
        kill_after_ms: run.kill_after.as_millis() as u64,
        max_output: run.max_output,
        keep_background: run.keep_background,
        run_after_restart: hook.response.mode == ResponseMode::Async,
        retry: RetryPlan::of(&hook.retry),
    })
}

fn reject_nul(value: &str, name: impl FnOnce() -> String) -> Result<(), BuildError> {
    if value.contains('\0') {
        return Err(BuildError::NulByte(name()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::load_str;
    use crate::request::{Headers, IdSource};

    const CONFIG: &str = r#"
hooks:
  - id: deploy
    signature: none
    run:
      command: ["./deploy.sh", "{{ payload.after }}", "--by={{ payload.pusher.name | \"nobody\" }}"]
      env:
        COMMIT: "{{ payload.after }}"
        PATH: /opt/bin
      env_passthrough: [SSH_AUTH_SOCK]
      stdin: payload
"#;

    fn server_env(name: &str) -> Option<String> {
        match name {
            "PATH" => Some("/usr/bin".into()),
            "HOME" => Some("/home/hook".into()),
            "SSH_AUTH_SOCK" => Some("/tmp/agent".into()),
            "AWS_SECRET_ACCESS_KEY" => Some("never passed".into()),
            _ => None,
        }
    }

    fn request(body: &str) -> RequestContext {
        RequestContext {
            headers: Headers::new([
                ("content-type".to_string(), "application/json".to_string()),
                ("x-github-event".to_string(), "push".to_string()),
            ]),
            body: body.to_string().into(),
            job_id: "job1".into(),
            request_id: "req1".into(),
            event_sources: &[IdSource::Header("x-github-event")],
            ..RequestContext::default()
        }
    }

    #[test]
    fn only_a_job_that_runs_after_a_restart_keeps_its_command_in_the_store() {
        let config = load_str(CONFIG, Path::new("/srv/hooks.yaml"), &|_| None).unwrap();
        let hook = config.hook("deploy").unwrap();
        let mut command = build(hook, &request(r#"{"after": "abc123"}"#)).unwrap();
        command.run_after_restart = true;
        let stored = command.to_stored();
        assert!(stored.contains("abc123"), "{stored}");
        assert_eq!(
            JobCommand::from_stored(&stored).unwrap(),
            Some(command.clone())
        );

        command.run_after_restart = false;
        let stored = command.to_stored();
        assert!(!stored.contains("abc123"), "{stored}");
        assert_eq!(JobCommand::from_stored(&stored).unwrap(), None);

        // A command stored without the field runs again, as its job was accepted to.
        let mut older = serde_json::to_value(&command).unwrap();
        older.as_object_mut().unwrap().remove("run_after_restart");
        command.run_after_restart = true;
        assert_eq!(
            JobCommand::from_stored(&older.to_string()).unwrap(),
            Some(command)
        );
        assert!(JobCommand::from_stored(r#"{"program": 1}"#).is_err());
        assert!(JobCommand::from_stored("not json").is_err());
    }

    #[test]
    fn builds_argv_and_a_clean_environment() {
        let config = load_str(CONFIG, Path::new("/srv/hooks.yaml"), &|_| None).unwrap();
        let hook = config.hook("deploy").unwrap();
        let body = r#"{"after": "$(rm -rf /); `id`", "pusher": {}}"#;
        let command = build(hook, &request(body)).unwrap();
        // What is stored never holds the server's own environment.
        assert!(!command
            .env
            .iter()
            .any(|(name, _)| name == "HOME" || name == "SSH_AUTH_SOCK"));
        let stored: JobCommand =
            serde_json::from_value(serde_json::to_value(&command).unwrap()).unwrap();
        assert_eq!(stored, command);
        let spec = stored.to_spec(&server_env, 2);
        assert_eq!(
            spec.program,
            Program::Argv(vec![
                "./deploy.sh".into(),
                "$(rm -rf /); `id`".into(),
                "--by=nobody".into()
            ])
        );
        let env: Vec<(&str, &str)> = spec
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            env,
            [
                ("HOME", "/home/hook"),
                ("SSH_AUTH_SOCK", "/tmp/agent"),
                ("COMMIT", "$(rm -rf /); `id`"),
                ("PATH", "/opt/bin"),
                ("HOOK_ID", "deploy"),
                ("HOOK_JOB_ID", "job1"),
                ("HOOK_REQUEST_ID", "req1"),
                ("HOOK_EVENT", "push"),
                ("HOOK_DELIVERY_ID", ""),
                ("HOOK_ATTEMPT", "2"),
            ]
        );
        assert_eq!(spec.stdin.as_deref(), Some(body.as_bytes()));
        assert_eq!(spec.workdir, Path::new("/srv"));
    }

    #[test]
    fn a_retry_plan_says_whether_and_when_a_job_runs_again() {
        let retry = Retry {
            attempts: 3,
            backoff: Duration::from_millis(200),
            max_delay: Duration::from_millis(300),
            on: StatusSet::of(&[Status::Failed, Status::Interrupted]),
        };
        let plan = RetryPlan::of(&retry).unwrap();
        let stored: RetryPlan =
            serde_json::from_str(&serde_json::to_string(&plan).unwrap()).unwrap();
        assert_eq!(stored, plan);
        // (status, attempt that ended, the wait's bounds in ms if it runs again)
        let cases = [
            (Status::Failed, 1, Some((100, 200))),
            (Status::Interrupted, 2, Some((150, 300))),
            (Status::Failed, 3, None),
            (Status::TimedOut, 1, None),
            (Status::Succeeded, 1, None),
            (Status::Cancelled, 1, None),
        ];
        let mut random = rand::thread_rng();
        for (status, attempt, bounds) in cases {
            let delay = plan.next_delay(status, attempt, &mut random);
            let delay = delay.map(|delay| delay.as_millis() as u64);
            match bounds {
                None => assert_eq!(delay, None, "{status:?} {attempt}"),
                Some((low, high)) => {
                    let delay = delay.expect("runs again");
                    assert!(
                        (low..=high).contains(&delay),
                        "{status:?} {attempt}: {delay}"
                    );
                }
            }
        }
        let once = Retry {
            attempts: 1,
            ..retry
        };
        assert_eq!(RetryPlan::of(&once), None, "one attempt keeps no plan");
    }

    #[test]
    fn a_missing_value_or_a_nul_byte_builds_nothing() {
        let config = load_str(CONFIG, Path::new("/srv/hooks.yaml"), &|_| None).unwrap();
        let hook = config.hook("deploy").unwrap();
        let missing = build(hook, &request(r#"{"before": "x"}"#)).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "the request has no value for `payload.after`"
        );
        let nul = build(hook, &request(r#"{"after": "a\u0000b"}"#)).unwrap_err();
        assert!(matches!(nul, BuildError::NulByte(_)), "{nul}");
    }

    #[test]
    fn a_rerun_keeps_the_values_and_names_the_new_job_and_the_old_one() {
        let config = load_str(CONFIG, Path::new("/srv/hooks.yaml"), &|_| None).unwrap();
        let hook = config.hook("deploy").unwrap();
        let mut first = build(hook, &request(r#"{"after": "abc"}"#)).unwrap();
        first.run_after_restart = false;
        let plan = RetryPlan {
            attempts: 3,
            backoff_ms: 10,
            max_delay_ms: 100,
            on: vec!["failed".into()],
        };
        let rerun = first.rerun("job2", "job1", Some(plan.clone()));
        let again = rerun.rerun("job3", "job2", None);

        let value = |command: &JobCommand, name: &str| {
            let values: Vec<&str> = command
                .env
                .iter()
                .filter(|(set, _)| set == name)
                .map(|(_, value)| value.as_str())
                .collect();
            values.join(",")
        };
        for (command, job, of) in [(&rerun, "job2", "job1"), (&again, "job3", "job2")] {
            assert_eq!(value(command, "HOOK_JOB_ID"), job);
            assert_eq!(value(command, "HOOK_RERUN_OF"), of, "one, the last");
            assert_eq!(value(command, "COMMIT"), "abc");
            assert_eq!(value(command, "HOOK_REQUEST_ID"), "req1");
            assert_eq!(
                (&command.program, &command.stdin),
                (&first.program, &first.stdin)
            );
            assert!(command.run_after_restart, "nobody waits for a re-run");
        }
        assert_eq!((rerun.retry, again.retry), (Some(plan), None));
    }
}
