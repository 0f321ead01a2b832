//! The job engine of one instance: admits jobs through the store (`admission`), claims the ones
//! it has room for (`scheduling`), runs them and records their ends (`running`), takes back what
//! a previous run left (`recovery`), and stops (`shutdown`).
//!
//! The store decides what may run (duplicates, queues, concurrency, across every instance); the
//! engine keeps only what lives in this process: each local job's published state, output sink
//! and cancellation, and how many jobs it runs against `max_jobs`. That state sits behind one
//! mutex that is never held across an await, and a panic while holding it does not poison it.

mod admission;
mod approvals;
mod events;
mod live;
mod recovery;
mod running;
mod scheduling;
mod shutdown;
mod sink;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::job::{Job, JobId, Status};
use crate::metrics::Metrics;
use crate::store::{CancelResult, Committed, Store, StoreError};

pub use self::admission::{Submission, SubmitError, Submitted};
pub use self::live::{Chunk, Item, LiveReader};
pub use self::sink::JobSink;

/// A handle on an accepted job.
pub struct JobHandle {
    /// The job as it was accepted (queued, or awaiting approval).
    pub job: Job,
    /// The job's state, updated at every change, for a job that runs on this instance (a `wait`
    /// or `stream` job); `None` for a job any instance may run.
    pub watch: Option<watch::Receiver<Job>>,
    /// For a job that runs again after a restart (`async`): resolves once the job is on disk,
    /// which its 202 waits for. `None` for the others, whose record nobody waits for (so the
    /// store may gather it with others into one commit).
    pub committed: Option<Committed>,
    /// The job's output as it comes, subscribed before the job could start, so nothing is missed;
    /// only when the submission asked to `follow`.
    pub output: Option<LiveReader>,
    /// The instance a `run_on: all` copy is placed on.
    pub placed_on: Option<String>,
}

/// What cancelling a job did.
#[derive(Debug, PartialEq, Eq)]
pub enum Cancelled {
    /// It was waiting; it will never run.
    Dequeued,
    /// It was running; its process group is being terminated (by the instance running it).
    Signalled,
    AlreadyFinished(Status),
    NotFound,
}

#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    /// Where each run's `run.files` get their private folder.
    files_dir: PathBuf,
    metrics: Arc<Metrics>,
    runtime: tokio::runtime::Handle,
    max_jobs: usize,
    max_pending: usize,
    local: Mutex<Local>,
    /// Wakes `shutdown` when a job ends.
    job_ended: Notify,
    /// Set once shutdown begins: nothing new is accepted or claimed.
    stopping: CancellationToken,
    /// When the first job waiting for a retry is due, as the last look at the store saw it: the
    /// scheduling timer wakes the engine then.
    retry_due: watch::Sender<Option<i64>>,
    /// Wakes the expiry timer when a job begins to wait for approval here.
    approval_admitted: Arc<Notify>,
}

#[derive(Default)]
struct Local {
    /// The jobs of this instance: queued ones only it may run, and the ones it runs.
    live: HashMap<JobId, Live>,
    /// Jobs running here, plus the slots a claim in progress has reserved.
    running: usize,
    /// A claim is in progress; `again` asks it to look once more when it is done.
    scheduling: bool,
    again: bool,
}

/// A job of this instance, while it is queued or running.
struct Live {
    job: watch::Sender<Job>,
    sink: Arc<JobSink>,
    cancel: CancellationToken,
    /// What a cancelled run is recorded as: `cancelled`, or `interrupted` at shutdown.
    cancelled_as: Status,
}

impl Engine {
    /// Builds an engine whose jobs run on the current tokio runtime.
    pub fn new(
        store: Store,
        metrics: Arc<Metrics>,
        max_jobs: usize,
        max_pending: usize,
        files_dir: PathBuf,
    ) -> Engine {
        let (retry_due, due) = watch::channel(None);
        let approval_admitted = Arc::new(Notify::new());
        let engine = Engine {
            inner: Arc::new(Inner {
                store,
                files_dir,
                metrics,
                runtime: tokio::runtime::Handle::current(),
                max_jobs,
                max_pending,
                local: Mutex::new(Local::default()),
                job_ended: Notify::new(),
                stopping: CancellationToken::new(),
                retry_due,
                approval_admitted: Arc::clone(&approval_admitted),
            }),
        };
        engine.inner.listen();
        scheduling::spawn_timer(&engine.inner, due);
        approvals::spawn_expiry(&engine.inner, approval_admitted);
        engine
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Resolves at the next end of a job that ran here. `enable` it before looking at the
    /// store, so that an end in between is not missed.
    pub fn job_ended(&self) -> tokio::sync::futures::Notified<'_> {
        self.inner.job_ended.notified()
    }

    /// A job: this instance's live copy while it is queued here or runs here, else the store's.
    pub async fn get(&self, id: &JobId) -> Result<Option<Job>, StoreError> {
        let live = self
            .inner
            .lock()
            .live
            .get(id)
            .map(|live| live.job.borrow().clone());
        match live {
            Some(job) => Ok(Some(job)),
            None => self.inner.store.get(id).await,
        }
    }

    /// Watches a job of this instance (its state and output); `None` if it is not one, or ended.
    pub fn watch(&self, id: &JobId) -> Option<(watch::Receiver<Job>, Arc<JobSink>)> {
        let local = self.inner.lock();
        local
            .live
            .get(id)
            .map(|live| (live.job.subscribe(), Arc::clone(&live.sink)))
    }

    /// Cancels a job: drops it from the queue, or has the instance running it terminate its
    /// process group.
    pub async fn cancel(&self, id: &JobId) -> Result<Cancelled, StoreError> {
        let inner = &self.inner;
        if inner.cancel_running(id) {
            return Ok(Cancelled::Signalled);
        }
        Ok(match inner.store.cancel(id).await? {
            CancelResult::Dequeued(job) => {
                inner
                    .metrics
                    .job_ended(&job.hook, job.status().as_str(), None);
                inner.ended_elsewhere(*job);
                Cancelled::Dequeued
            }
            CancelResult::Running { instance } => {
                if instance == inner.store.instance() {
                    inner.cancel_running(id);
                }
                Cancelled::Signalled
            }
            CancelResult::AlreadyFinished(status) => Cancelled::AlreadyFinished(status),
            CancelResult::NotFound => Cancelled::NotFound,
        })
    }

    /// Jobs running on this instance now, and jobs waiting in the store.
    pub fn load(&self) -> (usize, usize) {
        let running = self
            .inner
            .lock()
            .live
            .values()
            .filter(|live| live.job.borrow().status() == Status::Running)
            .count();
        (running, self.inner.store.waiting())
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Local> {
        // Every change under the lock leaves `Local` whole, so a panic elsewhere while it was
        // held does not make it wrong: go on with it.
        self.local.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Cancels a job running here; false if it does not run here.
    fn cancel_running(&self, id: &JobId) -> bool {
        let local = self.lock();
        match local.live.get(id) {
            Some(live) if live.job.borrow().status() == Status::Running => {
                live.cancel.cancel();
                true
            }
            _ => false,
        }
    }

    /// A job the store ended before it ran here (superseded or cancelled): publishes the end to
    /// its watchers here, if it has any. Counted by the instance that ended it.
    fn ended_elsewhere(&self, job: Job) {
        let live = {
            let mut local = self.lock();
            let runs_here = local
                .live
                .get(&job.id)
                .is_some_and(|live| live.job.borrow().status() == Status::Running);
            // A job that runs here publishes its own end when its command ends.
            if runs_here {
                return;
            }
            local.live.remove(&job.id)
        };
        if let Some(live) = live {
            live.job.send_replace(job);
        }
    }
}
