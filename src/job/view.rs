//! The job body every endpoint answers with (a `wait` answer, a 202, `GET /jobs/{id}`, the list
//! and the `exit` event of a stream): one typed view of a [`Job`], built here and nowhere else.

use serde::Serialize;

use super::Job;
use crate::store::NotificationState;

#[derive(Serialize)]
pub struct JobView<'a> {
    hook: &'a str,
    job_id: &'a str,
    status: &'static str,
    exit_code: Option<i32>,
    signal: Option<String>,
    duration_ms: Option<u64>,
    created_at: String,
    started_at: Option<String>,
    finished_at: Option<String>,
    /// The instance that ran (or runs) the job; `null` while queued.
    instance: Option<&'a str>,
    attempt: u32,
    attempts: u32,
    /// When a job waiting for a retry runs next; `null` otherwise.
    next_attempt_at: Option<String>,
    links: Links,
    /// When a job awaiting approval expires; only in an awaiting job's body.
    #[serde(skip_serializing_if = "Option::is_none")]
    approval_expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stdout: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stderr: Option<&'a str>,
    /// Shown by `GET /jobs/{id}` and the list, which read them from the store.
    #[serde(skip_serializing_if = "Option::is_none")]
    notifications: Option<Vec<NotificationView>>,
}

/// One notification of a job's end (or of its wait for approval), as its body shows it.
#[derive(Serialize)]
pub struct NotificationView {
    /// `end`, or `awaiting_approval` for the message that the job began to wait.
    event: &'static str,
    target: String,
    status: &'static str,
    attempts: u32,
    last_error: Option<String>,
    next_attempt_at: Option<String>,
}

impl NotificationView {
    pub fn of(state: &NotificationState) -> NotificationView {
        let event = if state.position >= crate::store::WAIT_POSITION {
            "awaiting_approval"
        } else {
            "end"
        };
        NotificationView {
            event,
            target: state.target.clone(),
            status: state.status.as_str(),
            attempts: state.attempts,
            last_error: state.last_error.clone(),
            next_attempt_at: state.next_attempt_ms.map(rfc3339),
        }
    }
}

#[derive(Serialize)]
struct Links {
    job: String,
    log: String,
}

impl<'a> JobView<'a> {
    /// The body of `job`; `stdout` and `stderr` only with `include_output` (as empty strings
    /// until the job ends). `now_ms` gives a running job's duration so far.
    pub fn of(job: &'a Job, include_output: bool, now_ms: i64) -> JobView<'a> {
        let run = job.run();
        let outcome = job.outcome();
        let output = |text: Option<&'a String>| include_output.then(|| text.map_or("", |t| t));
        JobView {
            hook: &job.hook,
            job_id: job.id.as_str(),
            status: job.status().as_str(),
            exit_code: outcome.and_then(|outcome| outcome.exit_code),
            signal: outcome.and_then(|outcome| outcome.signal).map(signal_name),
            duration_ms: job.duration_ms(now_ms),
            created_at: rfc3339(job.created_ms),
            started_at: run.map(|run| rfc3339(run.started_ms)),
            finished_at: job.finished_ms().map(rfc3339),
            instance: run.map(|run| run.instance.as_str()),
            attempt: job.attempt,
            attempts: job.attempts,
            next_attempt_at: job.next_attempt_ms.map(rfc3339),
            links: Links {
                job: format!("/jobs/{}", job.id),
                log: format!("/jobs/{}/log", job.id),
            },
            approval_expires_at: job.approval_until_ms().map(rfc3339),
            error: outcome.and_then(|outcome| outcome.error.as_deref()),
            stdout: output(outcome.and_then(|outcome| outcome.stdout.as_ref())),
            stderr: output(outcome.and_then(|outcome| outcome.stderr.as_ref())),
            notifications: None,
        }
    }

    /// The body with the job's notifications listed (none: an empty list).
    pub fn with_notifications(mut self, notifications: &[NotificationState]) -> JobView<'a> {
        self.notifications = Some(notifications.iter().map(NotificationView::of).collect());
        self
    }

    /// The view as a JSON value, for answers that add fields around it.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// Unix milliseconds as RFC 3339 in UTC with milliseconds: `2026-12-02T05:34:34.123Z`.
pub fn rfc3339(ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(at).to_string()
}

/// A signal's name (`SIGKILL`), or its number when it has none.
pub fn signal_name(signal: i32) -> String {
    nix::sys::signal::Signal::try_from(signal)
        .map(|signal| signal.as_str().to_string())
        .unwrap_or_else(|_| signal.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobId, JobState, Outcome, Run, Status};

    fn finished() -> Job {
        let mut job = Job::queued(
            JobId::parse(&"a".repeat(32)).unwrap(),
            "deploy".into(),
            "r".into(),
            None,
            1_700_000_000_000,
        );
        job.state = JobState::Finished {
            run: Some(Run {
                instance: "web-1".into(),
                started_ms: 1_700_000_000_010,
            }),
            finished_ms: 1_700_000_000_822,
            outcome: Outcome {
                signal: Some(9),
                duration_ms: Some(812),
                stdout: Some("out".into()),
                ..Outcome::unrun(Status::Failed, None)
            },
        };
        job
    }

    #[test]
    fn the_job_body_has_the_spec_fields() {
        let job = finished();
        let body = JobView::of(&job, false, 0).to_value();
        assert_eq!(body["status"], "failed");
        assert_eq!(body["signal"], "SIGKILL");
        assert_eq!(body["duration_ms"], 812);
        assert_eq!(body["created_at"], "2023-11-14T22:13:20.000Z");
        assert_eq!(body["started_at"], "2023-11-14T22:13:20.010Z");
        assert_eq!(body["finished_at"], "2023-11-14T22:13:20.822Z");
        assert_eq!(body["instance"], "web-1");
        assert_eq!(
            (&body["attempt"], &body["attempts"]),
            (&1.into(), &1.into())
        );
        assert_eq!(
            body["links"]["log"],
            format!("/jobs/{}/log", "a".repeat(32))
        );
        assert!(body.get("stdout").is_none() && body.get("error").is_none());
        let with_output = JobView::of(&job, true, 0).to_value();
        assert_eq!(
            (&with_output["stdout"], &with_output["stderr"]),
            (&"out".into(), &"".into())
        );
    }

    #[test]
    fn a_queued_job_has_nulls_until_reached() {
        let job = Job::queued(JobId::generate(), "h".into(), "r".into(), None, 0);
        let body = JobView::of(&job, true, 10).to_value();
        for field in [
            "started_at",
            "finished_at",
            "instance",
            "exit_code",
            "duration_ms",
            "next_attempt_at",
        ] {
            assert!(body[field].is_null(), "{field}: {}", body[field]);
        }
        assert_eq!(body["created_at"], "1970-01-01T00:00:00.000Z");
        assert_eq!(body["stdout"], "");
    }

    #[test]
    fn an_awaiting_job_says_when_its_approval_expires() {
        let mut job = Job::queued(JobId::generate(), "h".into(), "r".into(), None, 0);
        job.state = JobState::Awaiting {
            until_ms: 1_700_000_086_400,
        };
        let body = JobView::of(&job, false, 20).to_value();
        assert_eq!(body["status"], "awaiting_approval");
        assert_eq!(body["approval_expires_at"], "2023-11-14T22:14:46.400Z");
        assert!(body["started_at"].is_null() && body["instance"].is_null());
        job.approve().unwrap();
        let body = JobView::of(&job, false, 20).to_value();
        assert!(body.get("approval_expires_at").is_none(), "{body}");
        assert!(JobView::of(&finished(), false, 0)
            .to_value()
            .get("approval_expires_at")
            .is_none());
    }

    #[test]
    fn a_job_waiting_for_a_retry_says_when_it_runs_next() {
        let mut job = Job::queued(JobId::generate(), "h".into(), "r".into(), None, 0);
        job.attempts = 3;
        job.start("web-1", 10).unwrap();
        job.retry(1_700_000_000_500).unwrap();
        let body = JobView::of(&job, false, 20).to_value();
        assert_eq!(body["status"], "queued");
        assert_eq!(
            (&body["attempt"], &body["attempts"]),
            (&2.into(), &3.into())
        );
        assert_eq!(body["next_attempt_at"], "2023-11-14T22:13:20.500Z");
    }
}
