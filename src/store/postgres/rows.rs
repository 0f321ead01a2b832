//! How a job is a `jobs` row: the columns read back, a row into a [`Job`], a job's end into the
//! values of its update, and the lane and mode words the schema keeps.

use tokio_postgres::Row;

use crate::config::Concurrency;
use crate::job::{Job, JobId, JobState, Outcome, Run, Status};
use crate::store::Placement;

/// The columns [`job_from_row`] reads, in its order; a macro so statements stay `concat!`s.
macro_rules! job_columns {
    () => {
        "id, hook, request_id, status, dedupe_key, created_ms, started_ms, finished_ms, \
         instance, attempt, attempts, exit_code, signal, error, duration_ms, stdout, stderr, \
         next_attempt_ms, approval_until_ms"
    };
}
pub(super) use job_columns;

/// How many columns `job_columns!()` names: a column selected after them is at this index.
pub(super) const JOB_COLUMNS: usize = 19;

/// Between a hook and an instance in the lane of a `run_on: all` copy: a control character no
/// hook id or instance name holds.
const LANE_SEPARATOR: char = '\u{1f}';

/// The lane a job's concurrency counts in, and the instance it is placed on (`None`: any).
pub(super) fn lane_of(hook: &str, placement: &Placement) -> (String, Option<String>) {
    match placement {
        Placement::Any => (hook.to_string(), None),
        Placement::On {
            instance,
            per_instance: false,
        } => (hook.to_string(), Some(instance.clone())),
        Placement::On {
            instance,
            per_instance: true,
        } => (
            format!("{hook}{LANE_SEPARATOR}{instance}"),
            Some(instance.clone()),
        ),
    }
}

/// The `lanes.mode` word and `parallel_limit` of a concurrency.
pub(super) fn mode_words(concurrency: Concurrency) -> (&'static str, Option<i64>) {
    match concurrency {
        Concurrency::Parallel { limit } => (
            "parallel",
            limit.map(|limit| i64::try_from(limit).unwrap_or(i64::MAX)),
        ),
        Concurrency::Queue { .. } => ("queue", None),
        Concurrency::Latest => ("latest", None),
        Concurrency::Replace => ("replace", None),
    }
}

/// How many jobs of a lane may run at once under `mode` (a `lanes` row); an unknown mode runs
/// one at a time.
pub(super) fn capacity(mode: &str, parallel_limit: Option<i64>) -> usize {
    match (mode, parallel_limit) {
        ("parallel", None) => usize::MAX,
        ("parallel", Some(limit)) => usize::try_from(limit).unwrap_or(0),
        _ => 1,
    }
}

/// A row selected with `job_columns!()` first. An unreadable id or status is a corrupt row.
pub(super) fn job_from_row(row: &Row) -> Result<Job, String> {
    let id: String = row.get(0);
    let id = JobId::parse(&id).ok_or_else(|| format!("`{id}` is not a job id"))?;
    let status: String = row.get(3);
    let status = Status::parse(&status).ok_or_else(|| format!("`{status}` is not a job status"))?;
    let started_ms: Option<i64> = row.get(6);
    let instance: Option<String> = row.get(8);
    let run = started_ms.map(|started_ms| Run {
        instance: instance.unwrap_or_default(),
        started_ms,
    });
    let state = match (status, run) {
        (Status::AwaitingApproval, _) => JobState::Awaiting {
            until_ms: row.get::<_, Option<i64>>(18).unwrap_or(row.get(5)),
        },
        (Status::Queued, _) | (Status::Running, None) => JobState::Queued,
        (Status::Running, Some(run)) => JobState::Running { run },
        (status, run) => JobState::Finished {
            run,
            finished_ms: row.get::<_, Option<i64>>(7).unwrap_or(row.get(5)),
            outcome: Outcome {
                status,
                exit_code: row.get(11),
                signal: row.get(12),
                error: row.get(13),
                duration_ms: row
                    .get::<_, Option<i64>>(14)
                    .map(|ms| u64::try_from(ms).unwrap_or(0)),
                stdout: row.get(15),
                stderr: row.get(16),
            },
        },
    };
    Ok(Job {
        id,
        hook: row.get(1),
        request_id: row.get(2),
        dedupe_key: row.get(4),
        created_ms: row.get(5),
        attempt: u32::try_from(row.get::<_, i32>(9)).unwrap_or(1),
        attempts: u32::try_from(row.get::<_, i32>(10)).unwrap_or(1),
        next_attempt_ms: row
            .get::<_, Option<i64>>(17)
            .filter(|_| matches!(state, JobState::Queued)),
        state,
    })
}

/// A finished job's end, as the values of the `UPDATE` that records it.
pub(super) struct Ending {
    pub status: &'static str,
    pub finished_ms: i64,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: Option<i64>,
    pub stdout: Option<String>,
    pub stderr: Option<String>,
}

impl Ending {
    /// `None` for a job not finished.
    pub fn of(job: &Job) -> Option<Ending> {
        let JobState::Finished {
            finished_ms,
            outcome,
            ..
        } = &job.state
        else {
            return None;
        };
        Some(Ending {
            status: outcome.status.as_str(),
            finished_ms: *finished_ms,
            exit_code: outcome.exit_code,
            signal: outcome.signal,
            error: outcome.error.as_deref().map(text),
            duration_ms: outcome
                .duration_ms
                .map(|ms| i64::try_from(ms).unwrap_or(i64::MAX)),
            stdout: outcome.stdout.as_deref().map(text),
            stderr: outcome.stderr.as_deref().map(text),
        })
    }
}

/// `value` as PostgreSQL `TEXT` takes it: a NUL character (which output may hold) is refused
/// there, so it becomes U+FFFD, like the other bytes that were not text.
pub(super) fn text(value: &str) -> String {
    value.replace('\0', "\u{fffd}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_modes_and_capacities() {
        let any = Placement::Any;
        let here = Placement::On {
            instance: "web-1".into(),
            per_instance: false,
        };
        let copy = Placement::On {
            instance: "web-1".into(),
            per_instance: true,
        };
        assert_eq!(lane_of("deploy", &any), ("deploy".into(), None));
        assert_eq!(
            lane_of("deploy", &here),
            ("deploy".into(), Some("web-1".into()))
        );
        assert_eq!(
            lane_of("deploy", &copy),
            ("deploy\u{1f}web-1".into(), Some("web-1".into()))
        );
        // (concurrency, capacity)
        let cases = [
            (Concurrency::Parallel { limit: None }, usize::MAX),
            (Concurrency::Parallel { limit: Some(3) }, 3),
            (Concurrency::Queue { queue: 5 }, 1),
            (Concurrency::Latest, 1),
            (Concurrency::Replace, 1),
        ];
        for (concurrency, expected) in cases {
            let (mode, limit) = mode_words(concurrency);
            assert_eq!(capacity(mode, limit), expected, "{concurrency:?}");
        }
        assert_eq!(text("a\0b"), "a\u{fffd}b");
    }
}
