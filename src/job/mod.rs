//! A job: its id, its status, the states it moves through (`state`), how a command's outcome
//! maps to a status, and the JSON body clients see (`view`).

mod state;
mod view;

use std::fmt;

use crate::runner;
pub use state::{BadTransition, Job, JobState, Outcome, Run};
pub use view::{rfc3339, signal_name, JobView};

/// A job's id: 32 hex digits. It is the capability to read the job, so 24 of them are 96 random
/// bits (never a counter). The first 8 are the creation time in milliseconds, modulo 2^32 (about
/// 49 days): ids made close together sort together, so the store's unique index on them grows at
/// one end instead of taking a write at a random page for every job.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct JobId(String);

impl JobId {
    pub fn generate() -> JobId {
        // Truncation intended: the low 32 bits of the time are the prefix.
        let time = now_ms() as u32;
        let random = rand::random::<u128>() >> 32;
        JobId(format!("{time:08x}{random:024x}"))
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

/// A job's status as clients and the store see it (SPEC §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    Queued,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Cancelled,
    Superseded,
    Interrupted,
    /// Waits for an admin to approve it (SPEC §15); not final.
    AwaitingApproval,
    /// An admin refused it before it ran.
    Rejected,
    /// Nobody approved it within its hook's `approval.timeout`.
    Expired,
}

impl Status {
    pub const ALL: [Status; 11] = [
        Status::Queued,
        Status::Running,
        Status::Succeeded,
        Status::Failed,
        Status::TimedOut,
        Status::Cancelled,
        Status::Superseded,
        Status::Interrupted,
        Status::AwaitingApproval,
        Status::Rejected,
        Status::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::TimedOut => "timed_out",
            Status::Cancelled => "cancelled",
            Status::Superseded => "superseded",
            Status::Interrupted => "interrupted",
            Status::AwaitingApproval => "awaiting_approval",
            Status::Rejected => "rejected",
            Status::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        Status::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
    }

    /// Whether the job has ended (every status but `queued`, `running` and
    /// `awaiting_approval`).
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            Status::Queued | Status::Running | Status::AwaitingApproval
        )
    }
}

impl Outcome {
    /// How a finished run maps to a job's outcome, its output not yet set. `cancelled_as` is the
    /// status a run ended by cancellation gets: `cancelled` (by an admin or `replace`) or
    /// `interrupted` (shutdown).
    pub fn of(finished: runner::Finished, cancelled_as: Status) -> Outcome {
        let plain = |status| Outcome {
            duration_ms: Some(finished.duration.as_millis() as u64),
            ..Outcome::unrun(status, None)
        };
        let outcome = finished.outcome;
        match outcome {
            runner::Outcome::Exited { code: 0 } => Outcome {
                exit_code: Some(0),
                ..plain(Status::Succeeded)
            },
            runner::Outcome::Exited { code } => Outcome {
                exit_code: Some(code),
                ..plain(Status::Failed)
            },
            runner::Outcome::Signalled { signal } => Outcome {
                signal: Some(signal),
                ..plain(Status::Failed)
            },
            runner::Outcome::TimedOut => plain(Status::TimedOut),
            runner::Outcome::Cancelled => plain(cancelled_as),
            runner::Outcome::CouldNotStart { reason } => Outcome {
                error: Some(reason),
                ..plain(Status::Failed)
            },
        }
    }
}

/// How much of each stream an answer carries; the job log has the rest.
pub const ANSWER_OUTPUT_LIMIT: usize = 64 << 10;

/// The first [`ANSWER_OUTPUT_LIMIT`] bytes of a stream as text, with a note when there was more.
pub fn answer_text(bytes: &[u8]) -> String {
    if bytes.len() <= ANSWER_OUTPUT_LIMIT {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    let mut text = String::from_utf8_lossy(&bytes[..ANSWER_OUTPUT_LIMIT]).into_owned();
    text.push_str("\n[hookrunner: answer shows the first 64KiB; the job log has more]\n");
    text
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_after_a_time_prefix_and_parse_back() {
        let before = now_ms() as u32;
        let first = JobId::generate();
        let second = JobId::generate();
        let after = now_ms() as u32;
        assert_ne!(first.as_str()[8..], second.as_str()[8..]);
        for id in [&first, &second] {
            let prefix = u32::from_str_radix(&id.as_str()[..8], 16).unwrap();
            // The 32-bit clock may wrap between the two readings, once every 49 days.
            assert!(
                (before..=after).contains(&prefix) || after < before,
                "{id} was not made between {before:08x} and {after:08x}"
            );
        }
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
        for status in Status::ALL {
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
    }

    #[test]
    fn outcomes_map_to_statuses() {
        let cases = [
            (
                runner::Outcome::Exited { code: 0 },
                Status::Succeeded,
                Some(0),
                None,
            ),
            (
                runner::Outcome::Exited { code: 3 },
                Status::Failed,
                Some(3),
                None,
            ),
            (
                runner::Outcome::Signalled { signal: 9 },
                Status::Failed,
                None,
                Some(9),
            ),
            (runner::Outcome::TimedOut, Status::TimedOut, None, None),
            (runner::Outcome::Cancelled, Status::Interrupted, None, None),
            (
                runner::Outcome::CouldNotStart { reason: "x".into() },
                Status::Failed,
                None,
                None,
            ),
        ];
        for (outcome, status, exit_code, signal) in cases {
            let finished = runner::Finished {
                outcome: outcome.clone(),
                duration: std::time::Duration::from_millis(4),
            };
            let ending = Outcome::of(finished, Status::Interrupted);
            assert_eq!(
                (ending.status, ending.exit_code, ending.signal),
                (status, exit_code, signal),
                "{outcome:?}"
            );
        }
    }
}
