//! A job: one run of a hook's command, from queued to its outcome, and the JSON clients see.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::runner::{self, CappedOutput};

/// A job's id. It is the capability to read the job, so it carries 128 random bits, never a counter.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct JobId(String);

impl JobId {
    pub fn generate() -> JobId {
        JobId(format!("{:032x}", rand::random::<u128>()))
    }

    /// Accepts only the form `generate` makes, so a path segment is checked before any lookup.
    pub fn parse(text: &str) -> Option<JobId> {
        let valid =
            text.len() == 32 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        valid.then(|| JobId(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId({})", self.0)
    }
}

/// Where a job is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobState {
    Queued,
    Running {
        started: Instant,
    },
    Finished {
        outcome: JobOutcome,
        duration: Duration,
    },
}

/// How a finished job ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    Succeeded,
    /// A non-zero exit, death by a signal, or a command that could not start (`error` says why).
    Failed {
        exit_code: Option<i32>,
        signal: Option<i32>,
        error: Option<String>,
    },
    TimedOut,
    Cancelled,
}

impl From<runner::Outcome> for JobOutcome {
    fn from(outcome: runner::Outcome) -> JobOutcome {
        match outcome {
            runner::Outcome::Exited { code: 0 } => JobOutcome::Succeeded,
            runner::Outcome::Exited { code } => JobOutcome::Failed {
                exit_code: Some(code),
                signal: None,
                error: None,
            },
            runner::Outcome::Signalled { signal } => JobOutcome::Failed {
                exit_code: None,
                signal: Some(signal),
                error: None,
            },
            runner::Outcome::TimedOut => JobOutcome::TimedOut,
            runner::Outcome::Cancelled => JobOutcome::Cancelled,
            runner::Outcome::CouldNotStart { reason } => JobOutcome::Failed {
                exit_code: None,
                signal: None,
                error: Some(reason),
            },
        }
    }
}

/// A job's record, as the engine keeps it and clients read it.
#[derive(Clone, Debug)]
pub struct Job {
    pub id: JobId,
    pub hook: String,
    pub request_id: String,
    pub state: JobState,
    pub output: Arc<CappedOutput>,
}

/// How much of each stream an answer carries; the job log has the rest.
pub const ANSWER_OUTPUT_LIMIT: usize = 64 << 10;

impl Job {
    pub fn status(&self) -> &'static str {
        match &self.state {
            JobState::Queued => "queued",
            JobState::Running { .. } => "running",
            JobState::Finished { outcome, .. } => match outcome {
                JobOutcome::Succeeded => "succeeded",
                JobOutcome::Failed { .. } => "failed",
                JobOutcome::TimedOut => "timed_out",
                JobOutcome::Cancelled => "cancelled",
            },
        }
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.state, JobState::Finished { .. })
    }

    /// The job body of SPEC §8; `stdout`/`stderr` only when asked for, capped for the answer.
    pub fn to_json(&self, include_output: bool) -> Value {
        let (exit_code, signal, error, duration) = match &self.state {
            JobState::Queued => (None, None, None, None),
            JobState::Running { started } => (None, None, None, Some(started.elapsed())),
            JobState::Finished { outcome, duration } => match outcome {
                JobOutcome::Failed {
                    exit_code,
                    signal,
                    error,
                } => (*exit_code, *signal, error.clone(), Some(*duration)),
                JobOutcome::Succeeded => (Some(0), None, None, Some(*duration)),
                _ => (None, None, None, Some(*duration)),
            },
        };
        let mut body = json!({
            "hook": self.hook,
            "job_id": self.id.as_str(),
            "status": self.status(),
            "exit_code": exit_code,
            "signal": signal.map(signal_name),
            "duration_ms": duration.map(|d| d.as_millis() as u64),
            "links": {
                "job": format!("/jobs/{}", self.id),
                "log": format!("/jobs/{}/log", self.id),
            },
        });
        if let Some(error) = error {
            body["error"] = Value::String(error);
        }
        if include_output {
            body["stdout"] = Value::String(answer_text(&self.output.stdout()));
            body["stderr"] = Value::String(answer_text(&self.output.stderr()));
        }
        body
    }
}

fn answer_text(bytes: &[u8]) -> String {
    if bytes.len() <= ANSWER_OUTPUT_LIMIT {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    let mut text = String::from_utf8_lossy(&bytes[..ANSWER_OUTPUT_LIMIT]).into_owned();
    text.push_str("\n[hookrunner: answer shows the first 64KiB; the job log has more]\n");
    text
}

fn signal_name(signal: i32) -> String {
    nix::sys::signal::Signal::try_from(signal)
        .map(|signal| signal.as_str().to_string())
        .unwrap_or_else(|_| signal.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_and_parse_back() {
        let first = JobId::generate();
        let second = JobId::generate();
        assert_ne!(first, second);
        assert_eq!(JobId::parse(first.as_str()), Some(first));
        for bad in [
            "",
            "123",
            "../../etc/passwd",
            &"G".repeat(32),
            &"a".repeat(33),
        ] {
            assert_eq!(JobId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_job_body_reflects_the_outcome() {
        let job = |state| Job {
            id: JobId::parse(&"a".repeat(32)).unwrap(),
            hook: "deploy".into(),
            request_id: "r".into(),
            state,
            output: Arc::new(CappedOutput::new(1024)),
        };
        let finished = |outcome| JobState::Finished {
            outcome,
            duration: Duration::from_millis(812),
        };
        let cases = [
            (job(JobState::Queued), "queued", Value::Null, Value::Null),
            (
                job(finished(JobOutcome::Succeeded)),
                "succeeded",
                json!(0),
                Value::Null,
            ),
            (
                job(finished(JobOutcome::Failed {
                    exit_code: Some(3),
                    signal: None,
                    error: None,
                })),
                "failed",
                json!(3),
                Value::Null,
            ),
            (
                job(finished(JobOutcome::Failed {
                    exit_code: None,
                    signal: Some(9),
                    error: None,
                })),
                "failed",
                Value::Null,
                json!("SIGKILL"),
            ),
            (
                job(finished(JobOutcome::TimedOut)),
                "timed_out",
                Value::Null,
                Value::Null,
            ),
        ];
        for (job, status, exit_code, signal) in cases {
            let body = job.to_json(false);
            assert_eq!(body["status"], status);
            assert_eq!(body["exit_code"], exit_code, "{status}");
            assert_eq!(body["signal"], signal, "{status}");
            assert_eq!(
                body["links"]["log"],
                format!("/jobs/{}/log", "a".repeat(32))
            );
            assert!(body.get("stdout").is_none());
        }
    }
}
