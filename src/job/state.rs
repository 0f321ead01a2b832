//! A job and the states it goes through. A job is created `Queued` (or `Awaiting` an admin's
//! approval, which [`Job::approve`] turns into `Queued`), may be claimed by one instance
//! (`Running`), and ends `Finished` once, or goes back to `Queued` for its next attempt
//! ([`Job::retry`]); [`Job::approve`], [`Job::start`], [`Job::finish`] and [`Job::retry`] are
//! the only ways between states, and they refuse every other move.

use super::{JobId, Status};

/// One job: what it is for, and where it is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    pub id: JobId,
    pub hook: String,
    pub request_id: String,
    /// The key that makes a redelivery of the same request a duplicate of this job.
    pub dedupe_key: Option<String>,
    /// Unix milliseconds, like every `_ms` instant here.
    pub created_ms: i64,
    /// This run's number, from 1, and how many runs the job may have (1 and 1 without retries).
    pub attempt: u32,
    pub attempts: u32,
    /// When a job queued for a retry may run again (unix ms); `None` for a job that may run now.
    pub next_attempt_ms: Option<i64>,
    pub state: JobState,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobState {
    /// Waiting for an admin to approve it (SPEC §15), until `until_ms` (unix ms), when it
    /// expires. Nothing claims it meanwhile.
    Awaiting { until_ms: i64 },
    /// Waiting for an instance with room to claim it.
    Queued,
    /// Claimed by `instance`, whose command started at `started_ms`.
    Running { run: Run },
    /// Ended: after running (`run` is `Some`) or before (superseded, cancelled, interrupted).
    Finished {
        run: Option<Run>,
        finished_ms: i64,
        outcome: Outcome,
    },
}

/// Who ran a job, and since when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    pub instance: String,
    pub started_ms: i64,
}

/// How a job ended. `status` is always a final one ([`Status::is_final`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub status: Status,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: Option<u64>,
    /// The answer-sized output (see [`super::answer_text`]); the job log has all of it.
    pub stdout: Option<String>,
    pub stderr: Option<String>,
}

impl Outcome {
    /// The outcome of a job that ends without having run: only a status and maybe a reason.
    pub fn unrun(status: Status, error: Option<String>) -> Outcome {
        Outcome {
            status,
            exit_code: None,
            signal: None,
            error,
            duration_ms: None,
            stdout: None,
            stderr: None,
        }
    }
}

/// A move between states that a job cannot make; the job is left as it was.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadTransition {
    #[error("job {id} is {status} and cannot start")]
    CannotStart { id: JobId, status: &'static str },
    #[error("job {id} already ended as {status}")]
    AlreadyFinished { id: JobId, status: &'static str },
    #[error("`{status}` is not a status a job can end with")]
    NotFinal { status: &'static str },
    #[error("job {id} did not run, so it cannot end as `{status}`")]
    NeverRan { id: JobId, status: &'static str },
    #[error("job {id} is {status}; only a running job can be retried")]
    CannotRetry { id: JobId, status: &'static str },
    #[error("job {id} ran its last attempt ({attempts})")]
    NoAttemptLeft { id: JobId, attempts: u32 },
    #[error("job {id} is {status}, not awaiting approval")]
    NotAwaiting { id: JobId, status: &'static str },
}

impl Job {
    /// A new job, queued, first of `attempts` runs.
    pub fn queued(
        id: JobId,
        hook: String,
        request_id: String,
        dedupe_key: Option<String>,
        created_ms: i64,
    ) -> Job {
        Job {
            id,
            hook,
            request_id,
            dedupe_key,
            created_ms,
            attempt: 1,
            attempts: 1,
            next_attempt_ms: None,
            state: JobState::Queued,
        }
    }

    pub fn status(&self) -> Status {
        match &self.state {
            JobState::Awaiting { .. } => Status::AwaitingApproval,
            JobState::Queued => Status::Queued,
            JobState::Running { .. } => Status::Running,
            JobState::Finished { outcome, .. } => outcome.status,
        }
    }

    /// The run, while running or once ended after running.
    pub fn run(&self) -> Option<&Run> {
        match &self.state {
            JobState::Awaiting { .. } | JobState::Queued => None,
            JobState::Running { run } => Some(run),
            JobState::Finished { run, .. } => run.as_ref(),
        }
    }

    pub fn outcome(&self) -> Option<&Outcome> {
        match &self.state {
            JobState::Finished { outcome, .. } => Some(outcome),
            _ => None,
        }
    }

    pub fn finished_ms(&self) -> Option<i64> {
        match &self.state {
            JobState::Finished { finished_ms, .. } => Some(*finished_ms),
            _ => None,
        }
    }

    /// How long the command ran: to its end, or to `now_ms` while it runs.
    pub fn duration_ms(&self, now_ms: i64) -> Option<u64> {
        match &self.state {
            JobState::Awaiting { .. } | JobState::Queued => None,
            JobState::Running { run } => Some(now_ms.saturating_sub(run.started_ms).max(0) as u64),
            JobState::Finished { outcome, .. } => outcome.duration_ms,
        }
    }

    /// Until when an awaiting job waits for its approval (unix ms); `None` for any other.
    pub fn approval_until_ms(&self) -> Option<i64> {
        match self.state {
            JobState::Awaiting { until_ms } => Some(until_ms),
            _ => None,
        }
    }

    /// Awaiting approval → queued. Refused for a job in any other state.
    pub fn approve(&mut self) -> Result<(), BadTransition> {
        match self.state {
            JobState::Awaiting { .. } => {
                self.state = JobState::Queued;
                Ok(())
            }
            _ => Err(BadTransition::NotAwaiting {
                id: self.id.clone(),
                status: self.status().as_str(),
            }),
        }
    }

    /// Queued → running on `instance`.
    pub fn start(&mut self, instance: &str, at_ms: i64) -> Result<(), BadTransition> {
        match self.state {
            JobState::Queued => {
                self.next_attempt_ms = None;
                self.state = JobState::Running {
                    run: Run {
                        instance: instance.to_string(),
                        started_ms: at_ms,
                    },
                };
                Ok(())
            }
            _ => Err(BadTransition::CannotStart {
                id: self.id.clone(),
                status: self.status().as_str(),
            }),
        }
    }

    /// Running, queued or awaiting approval → finished. A job that never ran can only end as
    /// superseded, cancelled, interrupted or failed (a command that could not be read back); only
    /// one awaiting approval can end `rejected` or `expired`.
    pub fn finish(&mut self, outcome: Outcome, at_ms: i64) -> Result<(), BadTransition> {
        if !outcome.status.is_final() {
            return Err(BadTransition::NotFinal {
                status: outcome.status.as_str(),
            });
        }
        let decided = matches!(outcome.status, Status::Rejected | Status::Expired);
        if decided && !matches!(self.state, JobState::Awaiting { .. }) {
            return Err(BadTransition::NotAwaiting {
                id: self.id.clone(),
                status: self.status().as_str(),
            });
        }
        let run = match &self.state {
            JobState::Running { run } => Some(run.clone()),
            JobState::Awaiting { .. } | JobState::Queued => {
                if matches!(outcome.status, Status::Succeeded | Status::TimedOut) {
                    return Err(BadTransition::NeverRan {
                        id: self.id.clone(),
                        status: outcome.status.as_str(),
                    });
                }
                None
            }
            JobState::Finished { .. } => {
                return Err(BadTransition::AlreadyFinished {
                    id: self.id.clone(),
                    status: self.status().as_str(),
                })
            }
        };
        self.next_attempt_ms = None;
        self.state = JobState::Finished {
            run,
            finished_ms: at_ms,
            outcome,
        };
        Ok(())
    }
}

impl Job {
    /// Running → queued again for the next attempt, which may start at `at_ms`. Refused for a
    /// job not running, or on its last attempt.
    pub fn retry(&mut self, at_ms: i64) -> Result<(), BadTransition> {
        if !matches!(self.state, JobState::Running { .. }) {
            return Err(BadTransition::CannotRetry {
                id: self.id.clone(),
                status: self.status().as_str(),
            });
        }
        if self.attempt >= self.attempts {
            return Err(BadTransition::NoAttemptLeft {
                id: self.id.clone(),
                attempts: self.attempts,
            });
        }
        self.attempt += 1;
        self.next_attempt_ms = Some(at_ms);
        self.state = JobState::Queued;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        Job::queued(JobId::generate(), "h".into(), "r".into(), None, 5)
    }

    fn ended(status: Status) -> Outcome {
        Outcome::unrun(status, None)
    }

    #[test]
    fn a_job_moves_queued_running_finished_and_no_other_way() {
        let mut job = job();
        assert_eq!((job.status(), job.duration_ms(100)), (Status::Queued, None));
        job.start("web-1", 10).unwrap();
        assert_eq!(job.status(), Status::Running);
        assert_eq!(job.duration_ms(25), Some(15));
        assert!(matches!(
            job.start("web-2", 11),
            Err(BadTransition::CannotStart { .. })
        ));
        assert!(matches!(
            job.finish(ended(Status::Running), 12),
            Err(BadTransition::NotFinal { .. })
        ));
        let outcome = Outcome {
            exit_code: Some(0),
            duration_ms: Some(7),
            ..ended(Status::Succeeded)
        };
        job.finish(outcome, 20).unwrap();
        assert_eq!(job.status(), Status::Succeeded);
        assert_eq!(job.run().unwrap().instance, "web-1");
        assert_eq!(
            (job.finished_ms(), job.duration_ms(999)),
            (Some(20), Some(7))
        );
        assert!(matches!(
            job.finish(ended(Status::Failed), 21),
            Err(BadTransition::AlreadyFinished { .. })
        ));
        assert!(job.start("web-1", 22).is_err());
    }

    #[test]
    fn a_job_that_never_ran_ends_only_as_something_that_needs_no_run() {
        // (status, allowed from queued)
        let cases = [
            (Status::Superseded, true),
            (Status::Cancelled, true),
            (Status::Interrupted, true),
            (Status::Failed, true),
            (Status::Succeeded, false),
            (Status::TimedOut, false),
            (Status::Queued, false),
        ];
        for (status, allowed) in cases {
            let mut job = job();
            let result = job.finish(ended(status), 3);
            assert_eq!(result.is_ok(), allowed, "{status:?}");
            if allowed {
                assert_eq!((job.status(), job.run()), (status, None));
            } else {
                assert_eq!(job.status(), Status::Queued, "unchanged after {status:?}");
            }
        }
    }

    fn awaiting() -> Job {
        let mut job = job();
        job.state = JobState::Awaiting { until_ms: 1_000 };
        job
    }

    #[test]
    fn only_an_awaiting_job_is_approved_and_it_becomes_queued() {
        let mut job = awaiting();
        assert_eq!(
            (job.status(), job.approval_until_ms(), job.run()),
            (Status::AwaitingApproval, Some(1_000), None)
        );
        assert!(!job.status().is_final());
        assert!(
            matches!(
                job.start("web-1", 10),
                Err(BadTransition::CannotStart { .. })
            ),
            "nothing runs before its approval"
        );
        job.approve().unwrap();
        assert_eq!(
            (job.status(), job.approval_until_ms()),
            (Status::Queued, None)
        );
        // Every state but awaiting refuses, and leaves the job as it was.
        let queued = |_: &mut Job| {};
        let running = |job: &mut Job| job.start("web-1", 10).unwrap();
        let finished = |job: &mut Job| job.finish(ended(Status::Cancelled), 11).unwrap();
        let cases: [&dyn Fn(&mut Job); 3] = [&queued, &running, &finished];
        for (index, state) in cases.into_iter().enumerate() {
            let mut job = awaiting();
            job.approve().unwrap();
            state(&mut job);
            let before = job.clone();
            let result = job.approve();
            assert!(
                matches!(result, Err(BadTransition::NotAwaiting { .. })),
                "case {index}: {result:?}"
            );
            assert_eq!(job, before, "case {index}: unchanged");
        }
    }

    #[test]
    fn an_awaiting_job_ends_only_unrun_and_only_it_is_rejected_or_expires() {
        // (status, allowed from awaiting, allowed from queued, allowed from running)
        let cases = [
            (Status::Rejected, true, false, false),
            (Status::Expired, true, false, false),
            (Status::Cancelled, true, true, true),
            (Status::Superseded, true, true, true),
            (Status::Interrupted, true, true, true),
            (Status::Failed, true, true, true),
            (Status::Succeeded, false, false, true),
            (Status::TimedOut, false, false, true),
            (Status::AwaitingApproval, false, false, false),
            (Status::Queued, false, false, false),
        ];
        for (status, from_awaiting, from_queued, from_running) in cases {
            let mut running = job();
            running.start("web-1", 10).unwrap();
            for (mut job, allowed) in [
                (awaiting(), from_awaiting),
                (self::job(), from_queued),
                (running, from_running),
            ] {
                let before = job.clone();
                let result = job.finish(ended(status), 20);
                assert_eq!(
                    result.is_ok(),
                    allowed,
                    "{status:?} from {:?}: {result:?}",
                    before.status()
                );
                if allowed {
                    assert_eq!((job.status(), job.finished_ms()), (status, Some(20)));
                } else {
                    assert_eq!(job, before, "unchanged");
                }
            }
        }
    }

    #[test]
    fn a_retry_queues_a_running_job_for_its_next_attempt_and_nothing_else() {
        // (attempt, attempts, state, allowed)
        let running = |job: &mut Job| job.start("web-1", 10).unwrap();
        let finished = |job: &mut Job| {
            running(job);
            job.finish(ended(Status::Failed), 11).unwrap();
        };
        let queued = |_: &mut Job| {};
        let cases: [(u32, u32, &dyn Fn(&mut Job), bool); 5] = [
            (1, 3, &running, true),
            (2, 3, &running, true),
            (3, 3, &running, false),
            (1, 3, &queued, false),
            (1, 3, &finished, false),
        ];
        for (index, (attempt, attempts, state, allowed)) in cases.into_iter().enumerate() {
            let mut job = job();
            (job.attempt, job.attempts) = (attempt, attempts);
            state(&mut job);
            let before = job.clone();
            let result = job.retry(500);
            assert_eq!(result.is_ok(), allowed, "case {index}: {result:?}");
            if allowed {
                assert_eq!(job.status(), Status::Queued);
                assert_eq!((job.attempt, job.next_attempt_ms), (attempt + 1, Some(500)));
                assert_eq!(job.run(), None);
                job.start("web-2", 600).unwrap();
                assert_eq!(job.next_attempt_ms, None, "a started job waits for nothing");
            } else {
                assert_eq!(job, before, "case {index}: unchanged");
            }
        }
    }
}
