//! Admission: a job the request path built becomes a job in the store, or a clear refusal.

use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Engine, JobHandle, Live};
use crate::command::JobCommand;
use crate::config::{Concurrency, RunOn};
use crate::job::{now_ms, Job, JobId, JobState, Outcome, Status};
use crate::store::{Admission, NewJob, Placement, StoreError};

use super::sink::JobSink;

/// Why a job was not accepted. Nothing was recorded or run.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("{pending} jobs are already waiting, the server's `max_pending`")]
    ServerFull { pending: usize },
    #[error("hook `{hook}` already has {waiting} jobs waiting, its `concurrency.queue` limit")]
    HookQueueFull { hook: String, waiting: usize },
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("the job store cannot record jobs right now")]
    Store(#[source] StoreError),
}

/// A job to run.
pub struct Submission {
    pub hook: String,
    pub concurrency: Concurrency,
    pub job_id: JobId,
    pub request_id: String,
    pub command: JobCommand,
    pub dedupe_key: Option<String>,
    /// Whether the submitter follows the output as it comes (a `stream` answer): then the job's
    /// [`JobHandle::output`] is `Some`.
    pub follow: bool,
    /// `all`: one job per live instance, each run there (an `async` hook's only).
    pub run_on: RunOn,
    /// The hook has a `notify` list: the job's end is to be announced.
    pub notify: bool,
    /// The hook's `approval.timeout`: the job waits for an admin's approval at most this long
    /// before it may run (an `async` hook's only).
    pub approval: Option<std::time::Duration>,
}

/// What admitting one job did.
enum Admitted {
    Job(Box<JobHandle>),
    Duplicate(JobId),
}

/// What `submit` did.
pub enum Submitted {
    Accepted(Box<JobHandle>),
    /// `run_on: all`: one job per live instance, in the order of their names.
    FannedOut(Vec<JobHandle>),
    /// The same delivery is already queued, running or succeeded: nothing new runs.
    Duplicate(JobId),
}

impl Engine {
    /// Admits a job: refuses duplicates and overflow, records it, and wakes the scheduler.
    ///
    /// A job that does not run after a restart (`wait`, `stream`) runs on this instance, which
    /// holds its client; it is published here from before its admission, so a watcher or a
    /// stream misses nothing. Any instance may run an `async` job.
    pub async fn submit(&self, submission: Submission) -> Result<Submitted, SubmitError> {
        if self.inner.stopping.is_cancelled() {
            return Err(SubmitError::ShuttingDown);
        }
        let mut job = Job::queued(
            submission.job_id.clone(),
            submission.hook.clone(),
            submission.request_id.clone(),
            submission.dedupe_key.clone(),
            now_ms(),
        );
        if let Some(plan) = &submission.command.retry {
            job.attempts = plan.attempts;
        }
        if let Some(timeout) = submission.approval {
            let timeout = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
            job.state = JobState::Awaiting {
                until_ms: job.created_ms.saturating_add(timeout),
            };
        }
        match submission.run_on {
            RunOn::Any => Ok(match self.admit(job, &submission, None).await? {
                Admitted::Job(handle) => Submitted::Accepted(handle),
                Admitted::Duplicate(first) => Submitted::Duplicate(first),
            }),
            RunOn::All => self.fan_out(job, &submission).await,
        }
    }

    /// One job per live instance, placed there. A redelivery is a duplicate of the first copy
    /// (each copy's key names its instance, so the copies are not duplicates of each other).
    async fn fan_out(&self, first: Job, submission: &Submission) -> Result<Submitted, SubmitError> {
        let mut instances = self
            .inner
            .store
            .instances()
            .await
            .map_err(SubmitError::Store)?;
        instances.sort_by(|a, b| a.name.cmp(&b.name));
        let mut handles = Vec::with_capacity(instances.len());
        for (index, instance) in instances.iter().enumerate() {
            let mut job = first.clone();
            if index > 0 {
                job.id = JobId::generate();
            }
            job.dedupe_key = first
                .dedupe_key
                .as_ref()
                .map(|key| format!("{key}@{}", instance.name));
            match self.admit(job, submission, Some(&instance.name)).await {
                Ok(Admitted::Job(handle)) => handles.push(*handle),
                Ok(Admitted::Duplicate(holder)) if handles.is_empty() => {
                    return Ok(Submitted::Duplicate(holder))
                }
                // An instance that has its copy already (it was delivered while it was away).
                Ok(Admitted::Duplicate(_)) => {}
                // Copies admitted so far stay: each runs, and the client is told of the refusal.
                Err(error) => return Err(error),
            }
        }
        Ok(Submitted::FannedOut(handles))
    }

    /// Admits one job; `on` places it on that instance (a `run_on: all` copy).
    ///
    /// A job that does not run after a restart (`wait`, `stream`) runs on this instance, which
    /// holds its client; it is published here from before its admission, so a watcher or a
    /// stream misses nothing. Any instance may run an `async` job.
    async fn admit(
        &self,
        job: Job,
        submission: &Submission,
        on: Option<&str>,
    ) -> Result<Admitted, SubmitError> {
        let inner = &self.inner;
        let id = job.id.clone();
        let mut command = submission.command.clone();
        if on.is_some() {
            // Each copy is a job of its own.
            command.set_env("HOOK_JOB_ID", id.as_str());
        }
        let durable = command.run_after_restart;
        let me = inner.store.instance().to_string();
        let (placement, watch, output) = match on {
            Some(instance) => {
                let placement = Placement::On {
                    instance: instance.to_string(),
                    per_instance: true,
                };
                (placement, None, None)
            }
            None if durable => (Placement::Any, None, None),
            None => {
                let sink = Arc::new(JobSink::create(
                    inner.store.log_writer(&id),
                    command.max_output,
                    submission.follow,
                ));
                let output = sink.subscribe();
                let (sender, receiver) = watch::channel(job.clone());
                inner.lock().live.insert(
                    id.clone(),
                    Live {
                        job: sender,
                        sink,
                        cancel: CancellationToken::new(),
                        cancelled_as: Status::Cancelled,
                    },
                );
                let placement = Placement::On {
                    instance: me.clone(),
                    per_instance: false,
                };
                (placement, Some(receiver), output)
            }
        };
        // With a slot held for it, the store may start the job at once instead of queueing it
        // for the next claim.
        let placed_here = match &placement {
            Placement::Any => true,
            Placement::On { instance, .. } => *instance == me,
        };
        let approval_until_ms = job.approval_until_ms();
        let slot =
            (inner.store.starts_at_admission() && placed_here && approval_until_ms.is_none())
                .then(|| inner.hold_slot())
                .flatten();
        let new = NewJob {
            job: job.clone(),
            command,
            concurrency: submission.concurrency,
            placement,
            start_here: slot.is_some(),
            notify: submission.notify,
            approval_until_ms,
        };
        let admission = inner.store.admit(new, inner.max_pending).await;
        if let (
            Some(slot),
            Ok(Admission::Accepted {
                started: Some(_), ..
            }),
        ) = (slot, &admission)
        {
            slot.used();
        }
        let refused = |error| {
            inner.lock().live.remove(&id);
            Err(error)
        };
        let (committed, superseded, cancel, started) = match admission {
            Ok(Admission::Accepted {
                committed,
                superseded,
                cancel,
                started,
            }) => (committed, superseded, cancel, started),
            Ok(Admission::Duplicate(first)) => {
                inner.lock().live.remove(&id);
                return Ok(Admitted::Duplicate(first));
            }
            Ok(Admission::QueueFull { waiting }) => {
                return refused(SubmitError::HookQueueFull {
                    hook: job.hook,
                    waiting,
                })
            }
            Ok(Admission::ServerFull { pending }) => {
                return refused(SubmitError::ServerFull { pending })
            }
            Err(error) => return refused(SubmitError::Store(error)),
        };
        for old in superseded {
            self.superseded(&job.hook, &old);
        }
        for (running, _) in cancel.iter().filter(|(_, instance)| *instance == me) {
            inner.cancel_running(running);
        }
        match started {
            Some(claimed) => inner.start(*claimed),
            // It waits for a decision, not for room.
            None if approval_until_ms.is_some() => inner.approval_admitted.notify_one(),
            None => inner.wake(),
        }
        Ok(Admitted::Job(Box::new(JobHandle {
            job,
            watch,
            committed: durable.then_some(committed),
            output,
            placed_on: on.map(str::to_string),
        })))
    }

    /// A waiting job the store superseded for a newer one: its watchers here learn of it.
    pub(super) fn superseded(&self, hook: &str, id: &JobId) {
        let inner = &self.inner;
        inner
            .metrics
            .job_ended(hook, Status::Superseded.as_str(), None);
        let Some(live) = inner.lock().live.remove(id) else {
            return;
        };
        let mut job = live.job.borrow().clone();
        if job
            .finish(Outcome::unrun(Status::Superseded, None), now_ms())
            .is_ok()
        {
            live.job.send_replace(job);
        }
    }
}
