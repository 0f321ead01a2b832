//! Admission: a job the request path built becomes a job in the store, or a clear refusal.

use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Engine, JobHandle, Live};
use crate::command::JobCommand;
use crate::config::Concurrency;
use crate::job::{now_ms, Job, JobId, Outcome, Status};
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
}

/// What `submit` did.
pub enum Submitted {
    Accepted(Box<JobHandle>),
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
        let inner = &self.inner;
        if inner.stopping.is_cancelled() {
            return Err(SubmitError::ShuttingDown);
        }
        let Submission {
            hook,
            concurrency,
            job_id,
            request_id,
            command,
            dedupe_key,
            follow,
        } = submission;
        let job = Job::queued(job_id, hook, request_id, dedupe_key, now_ms());
        let id = job.id.clone();
        let durable = command.run_after_restart;
        let (placement, watch, output) = if durable {
            (Placement::Any, None, None)
        } else {
            let sink = Arc::new(JobSink::create(
                inner.store.log_writer(&id),
                command.max_output,
                follow,
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
                instance: inner.store.instance().to_string(),
                per_instance: false,
            };
            (placement, Some(receiver), output)
        };
        let new = NewJob {
            job: job.clone(),
            command,
            concurrency,
            placement,
        };
        let admission = inner.store.admit(new, inner.max_pending).await;
        let refused = |error| {
            inner.lock().live.remove(&id);
            Err(error)
        };
        let (committed, superseded, cancel) = match admission {
            Ok(Admission::Accepted {
                committed,
                superseded,
                cancel,
            }) => (committed, superseded, cancel),
            Ok(Admission::Duplicate(first)) => {
                inner.lock().live.remove(&id);
                return Ok(Submitted::Duplicate(first));
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
        let me = inner.store.instance();
        for (running, _) in cancel.iter().filter(|(_, instance)| instance == me) {
            inner.cancel_running(running);
        }
        inner.wake();
        Ok(Submitted::Accepted(Box::new(JobHandle {
            job,
            watch,
            committed: durable.then_some(committed),
            output,
        })))
    }

    /// A waiting job the store superseded for a newer one: its watchers here learn of it.
    fn superseded(&self, hook: &str, id: &JobId) {
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
