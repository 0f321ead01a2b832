//! The job engine: accepts jobs, holds them in order, runs them within the per-hook concurrency and
//! the global `max_jobs`, and publishes each job's state to whoever watches it.
//!
//! Jobs run on the runtime the engine was built on, not on the HTTP workers, so a client that
//! disconnects never stops its job. Records are kept in memory, newest `max_records` of them.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::config::{Concurrency, Hook};
use crate::job::{Job, JobId, JobState};
use crate::runner::{self, CappedOutput, CommandSpec};

/// Why a job was not accepted. Nothing was recorded or run.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("{pending} jobs are already waiting, the server's `max_pending`")]
    ServerFull { pending: usize },
    #[error("hook `{hook}` already has {waiting} jobs waiting, its `concurrency.queue` limit")]
    HookQueueFull { hook: String, waiting: usize },
}

#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    runtime: tokio::runtime::Handle,
    /// Commands running at once, all hooks together (`max_jobs`).
    running: Arc<Semaphore>,
    max_pending: usize,
    pending: AtomicUsize,
    lanes: Mutex<HashMap<String, Arc<Lane>>>,
    records: Mutex<Records>,
}

/// One hook's share of the engine: how many of its jobs may run at once, and how many wait.
struct Lane {
    slots: Option<Arc<Semaphore>>,
    queue_limit: Option<usize>,
    waiting: AtomicUsize,
}

struct Records {
    by_id: HashMap<JobId, watch::Sender<Job>>,
    order: VecDeque<JobId>,
    max: usize,
}

/// A job to run: the hook it belongs to and its fully rendered command.
pub struct Submission {
    pub job_id: JobId,
    pub request_id: String,
    pub command: CommandSpec,
    pub max_output: u64,
}

impl Engine {
    /// Builds an engine whose jobs run on the current tokio runtime.
    pub fn new(max_jobs: usize, max_pending: usize, max_records: usize) -> Engine {
        Engine {
            inner: Arc::new(Inner {
                runtime: tokio::runtime::Handle::current(),
                running: Arc::new(Semaphore::new(max_jobs)),
                max_pending,
                pending: AtomicUsize::new(0),
                lanes: Mutex::new(HashMap::new()),
                records: Mutex::new(Records {
                    by_id: HashMap::new(),
                    order: VecDeque::new(),
                    max: max_records.max(1),
                }),
            }),
        }
    }

    /// Records the job as queued and starts it when its hook and the server have room.
    pub fn submit(
        &self,
        hook: &Hook,
        submission: Submission,
    ) -> Result<watch::Receiver<Job>, SubmitError> {
        let inner = &self.inner;
        let lane = inner.lane(hook);
        let pending = inner.pending.load(Ordering::SeqCst);
        if pending >= inner.max_pending {
            return Err(SubmitError::ServerFull { pending });
        }
        let waiting = lane.waiting.load(Ordering::SeqCst);
        if lane.queue_limit.is_some_and(|limit| waiting >= limit) {
            return Err(SubmitError::HookQueueFull {
                hook: hook.id.clone(),
                waiting,
            });
        }
        inner.pending.fetch_add(1, Ordering::SeqCst);
        lane.waiting.fetch_add(1, Ordering::SeqCst);

        let job = Job {
            id: submission.job_id.clone(),
            hook: hook.id.clone(),
            request_id: submission.request_id,
            state: JobState::Queued,
            output: Arc::new(CappedOutput::new(submission.max_output)),
        };
        let (sender, receiver) = watch::channel(job);
        inner
            .records
            .lock()
            .expect("records lock")
            .insert(submission.job_id, sender.clone());

        let inner = Arc::clone(&self.inner);
        self.inner.runtime.spawn(async move {
            let _permits = inner.wait_for_room(&lane).await;
            let output = Arc::clone(&sender.borrow().output);
            sender.send_modify(|job| {
                job.state = JobState::Running {
                    started: Instant::now(),
                }
            });
            let finished = runner::run(submission.command, output, CancellationToken::new()).await;
            sender.send_modify(|job| {
                job.state = JobState::Finished {
                    outcome: finished.outcome.into(),
                    duration: finished.duration,
                }
            });
            let job = sender.borrow();
            tracing::info!(
                job_id = %job.id,
                hook = %job.hook,
                request_id = %job.request_id,
                status = job.status(),
                exit_code = ?job.to_json(false)["exit_code"].as_i64(),
                duration_ms = finished.duration.as_millis() as u64,
                "job finished"
            );
        });
        Ok(receiver)
    }

    /// A job's current record, while it is kept.
    pub fn get(&self, id: &JobId) -> Option<Job> {
        let records = self.inner.records.lock().expect("records lock");
        records.by_id.get(id).map(|sender| sender.borrow().clone())
    }
}

impl Inner {
    fn lane(&self, hook: &Hook) -> Arc<Lane> {
        let mut lanes = self.lanes.lock().expect("lanes lock");
        let lane = lanes.entry(hook.id.clone()).or_insert_with(|| {
            let (slots, queue_limit) = match hook.concurrency {
                Concurrency::Parallel { limit } => (limit, None),
                Concurrency::Queue { queue } => (Some(1), Some(queue)),
                // The config refuses these modes until the engine schedules them.
                Concurrency::Latest | Concurrency::Replace => (Some(1), None),
            };
            Arc::new(Lane {
                slots: slots.map(|n| Arc::new(Semaphore::new(n))),
                queue_limit,
                waiting: AtomicUsize::new(0),
            })
        });
        Arc::clone(lane)
    }

    /// Waits, in arrival order, for a slot of the hook and then one of the server.
    async fn wait_for_room(
        &self,
        lane: &Lane,
    ) -> (Option<OwnedSemaphorePermit>, OwnedSemaphorePermit) {
        // The semaphores are never closed, so acquiring cannot fail.
        let hook_permit = match &lane.slots {
            Some(slots) => Some(
                Arc::clone(slots)
                    .acquire_owned()
                    .await
                    .expect("never closed"),
            ),
            None => None,
        };
        let server_permit = Arc::clone(&self.running)
            .acquire_owned()
            .await
            .expect("never closed");
        lane.waiting.fetch_sub(1, Ordering::SeqCst);
        self.pending.fetch_sub(1, Ordering::SeqCst);
        (hook_permit, server_permit)
    }
}

impl Records {
    fn insert(&mut self, id: JobId, sender: watch::Sender<Job>) {
        self.by_id.insert(id.clone(), sender);
        self.order.push_back(id);
        // Forget the oldest finished jobs beyond the limit; unfinished ones are always kept.
        let mut index = 0;
        while self.order.len() > self.max && index < self.order.len() {
            let finished = self
                .by_id
                .get(&self.order[index])
                .is_some_and(|s| s.borrow().is_finished());
            if finished {
                if let Some(old) = self.order.remove(index) {
                    self.by_id.remove(&old);
                }
            } else {
                index += 1;
            }
        }
    }
}
