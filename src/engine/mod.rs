//! The job engine: admits jobs (duplicates, capacity, per-hook concurrency), records them in the
//! store, runs them on the server's runtime, publishes their state, recovers them after a restart,
//! and stops them on shutdown.
//!
//! Live state (queued and running jobs, the scheduler, the duplicate index) sits behind one mutex
//! that is never held across an await. Finished jobs live only in the store.

mod lanes;
mod live;
mod sink;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::command::JobCommand;
use crate::config::{Concurrency, Retention};
use crate::job::{self, answer_text, Ending, JobId, Status};
use crate::metrics::Metrics;
use crate::runner;
use crate::store::{Committed, Durability, JobRecord, JobUpdate, Store, StoreError};

use self::lanes::{Admission, Lanes};
pub use self::live::{Chunk, Item, LiveReader};
pub use self::sink::JobSink;

/// Why a job was not accepted. Nothing was recorded or run.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("{pending} jobs are already waiting, the server's `max_pending`")]
    ServerFull { pending: usize },
    #[error("hook `{hook}` already has {waiting} jobs waiting, its `concurrency.queue` limit")]
    HookQueueFull { hook: String, waiting: usize },
    #[error("the server is shutting down")]
    ShuttingDown,
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
    Accepted(JobHandle),
    /// The same delivery is already queued, running or succeeded: nothing new runs.
    Duplicate(JobId),
}

/// A handle on an accepted job.
pub struct JobHandle {
    pub id: JobId,
    /// The job's record, updated at every change of status.
    pub record: watch::Receiver<JobRecord>,
    /// For a job that runs again after a restart (`async`): resolves once the job is on disk,
    /// which its 202 waits for. `None` for the others, whose record nobody waits for (so the
    /// store may gather it with others into one commit).
    pub committed: Option<Committed>,
    /// The job's output as it comes, subscribed before the job could start, so nothing is missed;
    /// only when the submission asked to `follow`.
    pub output: Option<LiveReader>,
}

/// What cancelling a job did.
#[derive(Debug, PartialEq, Eq)]
pub enum Cancelled {
    /// It was waiting; it will never run.
    Dequeued,
    /// It was running; its process group is being terminated.
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
    metrics: Arc<Metrics>,
    runtime: tokio::runtime::Handle,
    max_jobs: usize,
    max_pending: usize,
    state: Mutex<State>,
    /// Wakes `shutdown` when a job ends.
    job_ended: Notify,
    /// Set once shutdown begins: nothing new is accepted or started.
    stopping: CancellationToken,
}

#[derive(Default)]
struct State {
    lanes: Lanes,
    live: HashMap<JobId, Live>,
    running: usize,
    /// (hook, dedupe key) → the job that holds it while it is queued, running or succeeded.
    dedupe: HashMap<(String, String), JobId>,
}

struct Live {
    record: watch::Sender<JobRecord>,
    command: Option<JobCommand>,
    sink: Arc<JobSink>,
    cancel: CancellationToken,
    /// What a cancelled run is recorded as: `cancelled`, or `interrupted` at shutdown.
    cancelled_as: Status,
}

impl Engine {
    /// Builds an engine whose jobs run on the current tokio runtime.
    pub fn new(store: Store, metrics: Arc<Metrics>, max_jobs: usize, max_pending: usize) -> Engine {
        Engine {
            inner: Arc::new(Inner {
                store,
                metrics,
                runtime: tokio::runtime::Handle::current(),
                max_jobs,
                max_pending,
                state: Mutex::new(State::default()),
                job_ended: Notify::new(),
                stopping: CancellationToken::new(),
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Re-admits the jobs a previous run left queued (in their order) and reloads the duplicate index.
    /// Jobs that were running when it stopped are marked `interrupted` by the store.
    pub async fn recover(
        &self,
        concurrency_of: impl Fn(&str) -> Concurrency,
    ) -> Result<usize, StoreError> {
        let store = &self.inner.store;
        let queued = store.recover().await?;
        let succeeded = store.succeeded_keys().await?;
        let mut state = self.inner.lock();
        for (hook, key, id) in succeeded {
            state.dedupe.insert((hook, key), id);
        }
        let count = queued.len();
        for record in queued {
            let command = match JobCommand::from_stored(&record.command) {
                Ok(Some(command)) => command,
                Ok(None) => {
                    let error = "the server stopped before this job started; only `async` jobs run after a restart";
                    drop(store.update(
                        &record.id,
                        ended_unrun(Status::Interrupted, Some(error.into())),
                        Durability::Disk,
                    ));
                    continue;
                }
                Err(error) => {
                    tracing::error!(job_id = %record.id, %error, "a queued job's command cannot be read back; marking it failed");
                    let error = format!("the stored command could not be read back: {error}");
                    let update = ended_unrun(Status::Failed, Some(error));
                    drop(store.update(&record.id, update, Durability::Disk));
                    continue;
                }
            };
            // Recovered jobs were accepted once; queue limits do not refuse them now.
            let mode = match concurrency_of(&record.hook) {
                Concurrency::Queue { .. } => Concurrency::Queue { queue: usize::MAX },
                other => other,
            };
            let _ = state.lanes.admit(&record.hook, mode, record.id.clone());
            if let Some(key) = &record.dedupe_key {
                state
                    .dedupe
                    .insert((record.hook.clone(), key.clone()), record.id.clone());
            }
            let sink = Arc::new(JobSink::create(
                &store.log_path(&record.id),
                command.max_output,
                false,
            ));
            state.live.insert(
                record.id.clone(),
                Live {
                    record: watch::channel(JobRecord {
                        command: String::new(),
                        ..record
                    })
                    .0,
                    command: Some(command),
                    sink,
                    cancel: CancellationToken::new(),
                    cancelled_as: Status::Cancelled,
                },
            );
        }
        self.inner.start_ready(&mut state);
        Ok(count)
    }

    /// Admits a job: refuses duplicates and overflow, records it, and starts it when there is room.
    pub fn submit(&self, submission: Submission) -> Result<Submitted, SubmitError> {
        let inner = &self.inner;
        if inner.stopping.is_cancelled() {
            return Err(SubmitError::ShuttingDown);
        }
        let mut state = inner.lock();
        let dedupe = submission
            .dedupe_key
            .clone()
            .map(|key| (submission.hook.clone(), key));
        if let Some(first) = dedupe.as_ref().and_then(|key| state.dedupe.get(key)) {
            return Ok(Submitted::Duplicate(first.clone()));
        }
        let pending = state.lanes.waiting();
        if pending >= inner.max_pending {
            return Err(SubmitError::ServerFull { pending });
        }
        let id = submission.job_id.clone();
        let (superseded, cancel) =
            match state
                .lanes
                .admit(&submission.hook, submission.concurrency, id.clone())
            {
                Admission::QueueFull { waiting } => {
                    return Err(SubmitError::HookQueueFull {
                        hook: submission.hook,
                        waiting,
                    });
                }
                Admission::Accepted { superseded, cancel } => (superseded, cancel),
            };

        let record = JobRecord {
            id: id.clone(),
            hook: submission.hook.clone(),
            request_id: submission.request_id,
            status: Status::Queued,
            dedupe_key: submission.dedupe_key,
            created_ms: job::now_ms(),
            started_ms: None,
            finished_ms: None,
            exit_code: None,
            signal: None,
            error: None,
            duration_ms: None,
            // The live record, cloned at every change and for every reader, goes without the
            // command; the stored one has it, since a restart needs it.
            command: String::new(),
            stdout: None,
            stderr: None,
        };
        // An `async` job's 202 waits for this commit, and it must survive a power loss; the
        // others are never re-run, and a crash of the server alone does not lose their record.
        let committed = inner.store.insert(
            JobRecord {
                command: submission.command.to_stored(),
                ..record.clone()
            },
            Durability::disk_if(submission.command.run_after_restart),
        );
        let committed = submission.command.run_after_restart.then_some(committed);
        let sink = Arc::new(JobSink::create(
            &inner.store.log_path(&id),
            submission.command.max_output,
            submission.follow,
        ));
        let output = sink.subscribe();
        let (sender, receiver) = watch::channel(record);
        state.live.insert(
            id.clone(),
            Live {
                record: sender,
                command: Some(submission.command),
                sink,
                cancel: CancellationToken::new(),
                cancelled_as: Status::Cancelled,
            },
        );
        if let Some(key) = dedupe {
            state.dedupe.insert(key, id.clone());
        }
        for old in superseded {
            inner.end_waiting(&mut state, &old, Status::Superseded);
        }
        for running in cancel {
            if let Some(live) = state.live.get(&running) {
                live.cancel.cancel();
            }
        }
        inner.start_ready(&mut state);
        Ok(Submitted::Accepted(JobHandle {
            id,
            record: receiver,
            committed,
            output,
        }))
    }

    /// A job's record: live while it is queued or running, from the store after.
    pub async fn get(&self, id: &JobId) -> Result<Option<JobRecord>, StoreError> {
        let live = self
            .inner
            .lock()
            .live
            .get(id)
            .map(|live| live.record.borrow().clone());
        match live {
            Some(record) => Ok(Some(record)),
            None => self.inner.store.get(id).await,
        }
    }

    /// Watches a live job (its record and output); `None` once it has ended.
    pub fn watch(&self, id: &JobId) -> Option<(watch::Receiver<JobRecord>, Arc<JobSink>)> {
        let state = self.inner.lock();
        state
            .live
            .get(id)
            .map(|live| (live.record.subscribe(), Arc::clone(&live.sink)))
    }

    /// Cancels a job: drops it from the queue, or terminates its process group.
    pub async fn cancel(&self, id: &JobId) -> Result<Cancelled, StoreError> {
        {
            let mut state = self.inner.lock();
            if state.lanes.remove_waiting(id) {
                self.inner.end_waiting(&mut state, id, Status::Cancelled);
                return Ok(Cancelled::Dequeued);
            }
            if let Some(live) = state.live.get(id) {
                live.cancel.cancel();
                return Ok(Cancelled::Signalled);
            }
        }
        Ok(match self.inner.store.get(id).await? {
            Some(record) => Cancelled::AlreadyFinished(record.status),
            None => Cancelled::NotFound,
        })
    }

    /// Jobs running now and waiting now.
    pub fn load(&self) -> (usize, usize) {
        let state = self.inner.lock();
        (state.running, state.lanes.waiting())
    }

    /// Stops taking work, lets running jobs finish within `grace`, then terminates them (they are
    /// recorded `interrupted`). Waiting jobs stay queued in the store for the next start.
    pub async fn shutdown(&self, grace: Duration) {
        let inner = &self.inner;
        inner.stopping.cancel();
        let deadline = tokio::time::Instant::now() + grace;
        let mut interrupted = false;
        loop {
            let ended = inner.job_ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if inner.lock().running == 0 {
                break;
            }
            if !interrupted && tokio::time::Instant::now() >= deadline {
                interrupted = true;
                let mut state = inner.lock();
                for live in state
                    .live
                    .values_mut()
                    .filter(|live| live.command.is_none())
                {
                    live.cancelled_as = Status::Interrupted;
                    live.cancel.cancel();
                }
                tracing::warn!("shutdown grace is over; terminating the jobs still running");
            }
            if interrupted {
                ended.await;
            } else {
                let _ = tokio::time::timeout_at(deadline, ended).await;
            }
        }
        if let Err(error) = inner.store.flush().await {
            tracing::error!(%error, "the job store could not commit its last writes");
        }
    }

    /// Deletes old finished jobs and their logs, as `retention` says, now and every `every`.
    pub fn prune_every(&self, retention: Retention, every: Duration) {
        let engine = self.clone();
        self.inner.runtime.spawn(async move {
            loop {
                match engine
                    .inner
                    .store
                    .prune(retention.max_age, retention.max_jobs)
                    .await
                {
                    Ok(0) => {}
                    Ok(count) => {
                        tracing::info!(count, "pruned old jobs");
                        engine.refresh_duplicates().await;
                    }
                    Err(error) => tracing::error!(%error, "cannot prune old jobs"),
                }
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    () = engine.inner.stopping.cancelled() => break,
                }
            }
        });
    }
}

impl Engine {
    /// Rebuilds the duplicate index from the store after a prune, so it holds the keys of live jobs
    /// and of the succeeded jobs still kept, and does not grow with the server's age.
    async fn refresh_duplicates(&self) {
        let succeeded = match self.inner.store.succeeded_keys().await {
            Ok(succeeded) => succeeded,
            Err(error) => return tracing::error!(%error, "cannot reload the duplicate index"),
        };
        let mut state = self.inner.lock();
        let State { live, dedupe, .. } = &mut *state;
        dedupe.retain(|_, id| live.contains_key(id));
        for (hook, key, id) in succeeded {
            dedupe.insert((hook, key), id);
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("engine state lock")
    }

    /// Ends a job that never started (superseded or cancelled while waiting).
    fn end_waiting(&self, state: &mut State, id: &JobId, status: Status) {
        let Some(live) = state.live.remove(id) else {
            return;
        };
        let at_ms = job::now_ms();
        let record = {
            let mut record = live.record.borrow().clone();
            record.status = status;
            record.finished_ms = Some(at_ms);
            record
        };
        forget_key(state, &record);
        let update = ended_unrun(status, None);
        // On the disk, so that a job cancelled or superseded before it started never runs after a
        // restart.
        drop(self.store.update(id, update, Durability::Disk));
        self.metrics.job_ended(&record.hook, status.as_str(), None);
        live.record.send_replace(record);
        tracing::info!(job_id = %id, status = status.as_str(), "job ended before it started");
    }

    /// Starts every waiting job that has room, unless shutting down.
    fn start_ready(self: &Arc<Self>, state: &mut State) {
        if self.stopping.is_cancelled() {
            return;
        }
        let free = self.max_jobs.saturating_sub(state.running);
        for (hook, id) in state.lanes.start_next(free) {
            let Some(live) = state.live.get_mut(&id) else {
                continue;
            };
            let Some(command) = live.command.take() else {
                continue;
            };
            state.running += 1;
            let started_ms = job::now_ms();
            live.record.send_modify(|record| {
                record.status = Status::Running;
                record.started_ms = Some(started_ms);
            });
            // Only a job that would run again after a restart must be on disk as started before
            // its command runs; the others are never re-run, so they do not wait for the disk.
            let started = self.store.update(
                &id,
                JobUpdate::Started { at_ms: started_ms },
                Durability::disk_if(command.run_after_restart),
            );
            let started = command.run_after_restart.then_some(started);
            let spec = command.to_spec(&|name| std::env::var(name).ok());
            let sink = Arc::clone(&live.sink);
            let cancel = live.cancel.clone();
            let inner = Arc::clone(self);
            self.runtime.spawn(async move {
                // A job that runs after a restart is on disk as `running` before its command
                // starts, so a crash leaves it `interrupted`, never queued to run a second time.
                let recorded = match started {
                    Some(started) => started.await,
                    None => Ok(()),
                };
                let finished = match recorded {
                    Ok(()) => runner::run(spec, sink.clone(), cancel).await,
                    Err(error) => {
                        tracing::error!(job_id = %id, %error, "cannot record that the job started; not running it");
                        let reason = format!("the job store could not record the start: {error}");
                        runner::Finished {
                            outcome: runner::Outcome::CouldNotStart { reason },
                            duration: Duration::ZERO,
                        }
                    }
                };
                inner.finish(&hook, &id, finished, &sink);
            });
        }
    }

    fn finish(
        self: &Arc<Self>,
        hook: &str,
        id: &JobId,
        finished: runner::Finished,
        sink: &JobSink,
    ) {
        let mut state = self.lock();
        state.running -= 1;
        state.lanes.finished(hook, id);
        let Some(live) = state.live.remove(id) else {
            return;
        };
        let ending = Ending::of(finished.outcome, live.cancelled_as);
        let at_ms = job::now_ms();
        let duration_ms = finished.duration.as_millis() as u64;
        let (stdout, stderr) = (answer_text(&sink.stdout()), answer_text(&sink.stderr()));
        let mut record = live.record.borrow().clone();
        record.status = ending.status;
        record.finished_ms = Some(at_ms);
        record.exit_code = ending.exit_code;
        record.signal = ending.signal;
        record.error = ending.error.clone();
        record.duration_ms = Some(duration_ms);
        record.stdout = Some(stdout.clone());
        record.stderr = Some(stderr.clone());
        if record.status != Status::Succeeded {
            forget_key(&mut state, &record);
        }
        let update = JobUpdate::Finished {
            status: ending.status,
            at_ms,
            exit_code: ending.exit_code,
            signal: ending.signal,
            error: ending.error,
            duration_ms: Some(duration_ms),
            stdout: Some(stdout),
            stderr: Some(stderr),
        };
        // Nobody waits for the end to reach the disk: a power loss just after it leaves the job
        // `running`, which the next start records as `interrupted`; it never runs again. But a
        // success that holds a duplicate key must reach it (with the next commit, which need
        // not come at once), or a redelivery after a power loss would run the job again.
        let durability =
            Durability::disk_if(record.status == Status::Succeeded && record.dedupe_key.is_some());
        drop(self.store.update(id, update, durability));
        tracing::info!(
            job_id = %id,
            hook,
            request_id = %record.request_id,
            status = record.status.as_str(),
            exit_code = record.exit_code,
            duration_ms,
            "job finished"
        );
        self.metrics.job_ended(
            hook,
            record.status.as_str(),
            Some(finished.duration.as_secs_f64()),
        );
        live.record.send_replace(record);
        self.start_ready(&mut state);
        drop(state);
        self.job_ended.notify_waiters();
    }
}

/// The store update for a job that ends without having run.
fn ended_unrun(status: Status, error: Option<String>) -> JobUpdate {
    JobUpdate::Finished {
        status,
        at_ms: job::now_ms(),
        exit_code: None,
        signal: None,
        error,
        duration_ms: None,
        stdout: None,
        stderr: None,
    }
}

/// A job that did not succeed gives its duplicate key back, so a redelivery runs again.
fn forget_key(state: &mut State, record: &JobRecord) {
    if let Some(key) = &record.dedupe_key {
        let slot = (record.hook.clone(), key.clone());
        if state.dedupe.get(&slot) == Some(&record.id) {
            state.dedupe.remove(&slot);
        }
    }
}
