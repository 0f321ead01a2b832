//! The embedded backend: jobs in SQLite at `{state_dir}/hookrunner.db`, their logs in
//! `{state_dir}/logs/`, for one instance.
//!
//! One instance owns the file, so scheduling lives in its memory: `lanes` decides which waiting
//! job starts next, the jobs awaiting approval wait outside the lanes until approved, and the
//! duplicate index maps each kept key to its job. All sit behind one
//! mutex, never held across an await, that also serialises admissions and claims, which gives the
//! boundary's atomicity. `rows` is the database itself, written by one thread (`writer`).
//!
//! Only this module speaks SQL: the schema is in `schema.rs`, the statements in `queries.rs`.
//! `files.rs` keeps the state directory private and checks, before and after every commit that
//! fsyncs, that the database's paths still name the files the connection writes to.

mod approvals;
mod files;
mod lanes;
mod notifications;
mod queries;
mod rows;
mod schema;
#[cfg(test)]
mod tests;
mod writer;

use std::collections::{HashMap, HashSet};
use std::io::SeekFrom;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use self::lanes::Lanes;
use self::rows::{log_path, now_ms, Counters, JobRecord, JobUpdate, Rows};
use super::log::LOG_READ_SIZE;
use super::{
    Admission, CancelResult, Claimed, Committed, Durability, InstanceInfo, ListQuery, LogWriter,
    NewJob, Page, Retried, StoreError, StoreStats, WorkWaiting,
};
use crate::command::JobCommand;
use crate::config::Concurrency;
use crate::job::{Job, JobId, JobState, Outcome, Status};

/// A handle on the SQLite store. Clones are cheap and share the database and the scheduling.
#[derive(Clone)]
pub struct SqliteStore {
    rows: Rows,
    instance: Arc<str>,
    started_ms: i64,
    line: Arc<Mutex<Line>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("instance", &self.instance)
            .field("rows", &self.rows)
            .finish()
    }
}

/// The jobs in line and running, and the duplicate keys: what the database would otherwise be
/// asked at every admission and claim.
#[derive(Default)]
struct Line {
    lanes: Lanes,
    /// Queued jobs, with their commands.
    waiting: HashMap<JobId, (Job, JobCommand)>,
    /// Jobs awaiting approval, with their commands: not in `lanes` until approved.
    awaiting: HashMap<JobId, (Job, JobCommand)>,
    running: HashSet<JobId>,
    /// (hook, dedupe key) → the job that holds it while it awaits approval, is queued, running
    /// or succeeded.
    dedupe: HashMap<(String, String), JobId>,
}

impl SqliteStore {
    /// Opens (creating if missing) the store in `state_dir`, for the instance named `instance`.
    pub fn open(state_dir: &Path, instance: &str) -> Result<SqliteStore, StoreError> {
        Ok(SqliteStore {
            rows: Rows::open(state_dir)?,
            instance: Arc::from(instance),
            started_ms: now_ms(),
            line: Arc::default(),
        })
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub fn state_dir(&self) -> &Path {
        self.rows.state_dir()
    }

    fn line(&self) -> MutexGuard<'_, Line> {
        // A panic elsewhere while holding the lock leaves the line as consistent as each step
        // of it is; the server goes on.
        self.line.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub async fn admit(&self, new: NewJob, max_pending: usize) -> Result<Admission, StoreError> {
        let NewJob {
            mut job,
            command,
            concurrency,
            notify,
            approval_until_ms,
            ..
        } = new;
        let mut line = self.line();
        let key = job.dedupe_key.clone().map(|key| (job.hook.clone(), key));
        if let Some(first) = key.as_ref().and_then(|key| line.dedupe.get(key)) {
            return Ok(Admission::Duplicate(first.clone()));
        }
        let pending = line.pending();
        if pending >= max_pending {
            return Ok(Admission::ServerFull { pending });
        }
        // A job awaiting approval waits outside its lane: the lane's rules apply at `approve`.
        let (superseded, cancel) = match approval_until_ms {
            Some(until_ms) => {
                job.state = JobState::Awaiting { until_ms };
                (Vec::new(), Vec::new())
            }
            None => match self.enter_lane(&mut line, &job.hook, concurrency, &job.id) {
                Ok(decided) => decided,
                Err(waiting) => return Ok(Admission::QueueFull { waiting }),
            },
        };
        // An `async` job's 202 waits for this commit, and it must survive a power loss; the
        // others are never re-run, and a crash of the server alone does not lose their record.
        let durable = command.run_after_restart;
        let committed = self.rows.insert(
            JobRecord::new(&job, command.to_stored(), notify),
            Durability::disk_if(durable),
        );
        if let Some(key) = key {
            line.dedupe.insert(key, job.id.clone());
        }
        let place = match job.state {
            JobState::Awaiting { .. } => &mut line.awaiting,
            _ => &mut line.waiting,
        };
        place.insert(job.id.clone(), (job, command));
        self.supersede(&mut line, &superseded);
        // `start_here` is declined: this store's claim is decided in memory, so a claim right
        // after the admission costs nothing.
        Ok(Admission::Accepted {
            committed,
            superseded,
            cancel,
            started: None,
        })
    }

    pub async fn claim(&self, free: usize) -> Result<Vec<Claimed>, StoreError> {
        let mut line = self.line();
        let mut claimed = Vec::new();
        for (_, id) in line.lanes.start_next(free, now_ms()) {
            let Some((mut job, command)) = line.waiting.remove(&id) else {
                continue;
            };
            let at_ms = now_ms();
            if job.start(&self.instance, at_ms).is_err() {
                continue;
            }
            line.running.insert(id.clone());
            let update = JobUpdate::Started {
                at_ms,
                instance: self.instance.to_string(),
            };
            // Only a job that would run again after a restart must be on disk as started before
            // its command runs; the others are never re-run, so they do not wait for the disk.
            let durable = command.run_after_restart;
            let started = self.rows.update(&id, update, Durability::disk_if(durable));
            claimed.push(Claimed {
                job,
                command,
                started: durable.then_some(started),
            });
        }
        Ok(claimed)
    }

    pub fn finish(&self, job: &Job, durability: Durability) -> Committed {
        let mut line = self.line();
        if line.running.remove(&job.id) {
            line.lanes.finished(&job.hook, &job.id);
        } else if line.lanes.remove_waiting(&job.id) {
            line.waiting.remove(&job.id);
        } else {
            line.awaiting.remove(&job.id);
        }
        if job.status() != Status::Succeeded {
            forget_key(&mut line, job);
        }
        drop(line);
        match finished_update(job) {
            Some(update) => self.rows.update(&job.id, update, durability),
            None => Committed::done(),
        }
    }

    /// Puts a job that ran here back in line for its next attempt (`job` is queued, its
    /// `next_attempt_ms` set), or records it `superseded` when a newer job of its hook waits.
    pub async fn retry(&self, job: &Job, command: &JobCommand) -> Result<Retried, StoreError> {
        let Some(due_ms) = job
            .next_attempt_ms
            .filter(|_| job.status() == Status::Queued)
        else {
            return Err(StoreError::NotRetrying(job.id.clone()));
        };
        let mut line = self.line();
        if !line.running.remove(&job.id) {
            return Ok(Retried::NotHeld);
        }
        if !line.lanes.retry(&job.hook, &job.id, due_ms) {
            let mut ended = job.clone();
            ended.next_attempt_ms = None;
            let outcome = Outcome::unrun(Status::Superseded, None);
            if ended.finish(outcome, now_ms()).is_ok() {
                forget_key(&mut line, &ended);
                if let Some(update) = finished_update(&ended) {
                    drop(self.rows.update(&ended.id, update, Durability::Disk));
                }
            }
            return Ok(Retried::Superseded(Box::new(ended)));
        }
        line.waiting
            .insert(job.id.clone(), (job.clone(), command.clone()));
        drop(line);
        // On the disk: the next attempt was promised by the 202 as much as the first.
        let update = JobUpdate::Retried {
            attempt: job.attempt,
            next_attempt_ms: due_ms,
        };
        Ok(Retried::Queued {
            committed: self.rows.update(&job.id, update, Durability::Disk),
        })
    }

    pub fn work_waiting(&self, up_to: usize) -> WorkWaiting {
        // The claim itself is decided in memory: it costs no more than a look.
        WorkWaiting {
            now: up_to,
            next_due_ms: self.line().lanes.next_due(now_ms()),
        }
    }

    pub async fn cancel(&self, id: &JobId) -> Result<CancelResult, StoreError> {
        {
            let mut line = self.line();
            if line.awaiting.contains_key(id) || line.lanes.remove_waiting(id) {
                let ended = self.end_waiting(&mut line, id, Status::Cancelled);
                if let Some(job) = ended {
                    return Ok(CancelResult::Dequeued(Box::new(job)));
                }
            }
            if line.running.contains(id) {
                return Ok(CancelResult::Running {
                    instance: self.instance.to_string(),
                });
            }
        }
        Ok(match self.get(id).await? {
            Some(job) => CancelResult::AlreadyFinished(job.status()),
            None => CancelResult::NotFound,
        })
    }

    pub async fn get(&self, id: &JobId) -> Result<Option<Job>, StoreError> {
        Ok(self.rows.get(id).await?.map(JobRecord::into_job))
    }

    pub async fn command(&self, id: &JobId) -> Result<Option<JobCommand>, StoreError> {
        match self.rows.get(id).await? {
            Some(record) => super::read_command(&record.command),
            None => Ok(None),
        }
    }

    pub async fn list(&self, query: ListQuery) -> Result<Page, StoreError> {
        // One more than asked for says whether there is a next page.
        let limit = query.limit.max(1);
        let mut records = self
            .rows
            .list(
                query.hook.as_deref(),
                query.status,
                query.before.as_ref(),
                limit + 1,
            )
            .await?;
        let more = records.len() > limit;
        records.truncate(limit);
        let jobs: Vec<Job> = records.into_iter().map(JobRecord::into_job).collect();
        let next = more
            .then(|| jobs.last().map(|job| job.id.clone()))
            .flatten();
        Ok(Page { jobs, next })
    }

    pub async fn recover(
        &self,
        concurrency_of: &(dyn Fn(&str) -> Concurrency + Sync),
    ) -> Result<Vec<Job>, StoreError> {
        self.retry_interrupted().await?;
        let queued = self.rows.recover().await?;
        let succeeded = self.rows.succeeded_keys().await?;
        let mut line = self.line();
        for (hook, key, id) in succeeded {
            line.dedupe.insert((hook, key), id);
        }
        let mut recovered = Vec::with_capacity(queued.len());
        for record in queued {
            let command = match super::stored_command(&record.command) {
                Ok(command) => command,
                Err(outcome) => {
                    let mut job = record.into_job();
                    if job.finish(outcome, now_ms()).is_ok() {
                        if let Some(update) = finished_update(&job) {
                            drop(self.rows.update(&job.id, update, Durability::Disk));
                        }
                    }
                    continue;
                }
            };
            let job = record.into_job();
            if let Some(key) = &job.dedupe_key {
                line.dedupe
                    .insert((job.hook.clone(), key.clone()), job.id.clone());
            }
            if let JobState::Awaiting { .. } = job.state {
                // It waits on for its approval, outside its lane.
                line.awaiting.insert(job.id.clone(), (job, command));
                continue;
            }
            // Recovered jobs were accepted once; queue limits do not refuse them now.
            let mode = match concurrency_of(&job.hook) {
                Concurrency::Queue { .. } => Concurrency::Queue { queue: usize::MAX },
                other => other,
            };
            let _ = line
                .lanes
                .admit_due(&job.hook, mode, job.id.clone(), job.next_attempt_ms);
            recovered.push(job.clone());
            line.waiting.insert(job.id.clone(), (job, command));
        }
        Ok(recovered)
    }

    /// For start-up: the jobs a previous run left running whose hook retries `interrupted`
    /// and that have an attempt left are queued again for it, as if their run had ended now.
    async fn retry_interrupted(&self) -> Result<(), StoreError> {
        let running = self
            .rows
            .list(None, Some(Status::Running), None, usize::MAX)
            .await?;
        for record in running {
            let Ok(Some(command)) = JobCommand::from_stored(&record.command) else {
                continue;
            };
            let Some(plan) = &command.retry else {
                continue;
            };
            let delay =
                plan.next_delay(Status::Interrupted, record.attempt, &mut rand::thread_rng());
            if let Some(delay) = delay {
                let update = JobUpdate::Retried {
                    attempt: record.attempt + 1,
                    next_attempt_ms: now_ms().saturating_add(delay.as_millis() as i64),
                };
                drop(self.rows.update(&record.id, update, Durability::Disk));
            }
        }
        Ok(())
    }

    pub fn log_writer(&self, id: &JobId) -> LogWriter {
        LogWriter::file(self.rows.log_path(id))
    }

    pub async fn read_log(&self, id: &JobId, offset: u64) -> Result<Bytes, StoreError> {
        let path = self.rows.log_path(id);
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Bytes::new()),
            Err(error) => return Err(error.into()),
        };
        file.seek(SeekFrom::Start(offset)).await?;
        let mut piece = BytesMut::with_capacity(LOG_READ_SIZE);
        while piece.len() < LOG_READ_SIZE {
            if file.read_buf(&mut piece).await? == 0 {
                break;
            }
        }
        Ok(piece.freeze())
    }

    pub async fn prune(&self, max_age: Duration, max_jobs: usize) -> Result<usize, StoreError> {
        let count = self.rows.prune(max_age, max_jobs).await?;
        if count > 0 {
            // The duplicate index holds the keys of live jobs and of the succeeded jobs still
            // kept, so it does not grow with the server's age.
            let succeeded = self.rows.succeeded_keys().await?;
            let mut line = self.line();
            let Line {
                waiting,
                awaiting,
                running,
                dedupe,
                ..
            } = &mut *line;
            dedupe.retain(|_, id| {
                waiting.contains_key(id) || awaiting.contains_key(id) || running.contains(id)
            });
            for (hook, key, id) in succeeded {
                dedupe.insert((hook, key), id);
            }
        }
        Ok(count)
    }

    pub async fn check_writable(&self) -> Result<(), StoreError> {
        self.rows.check_writable().await
    }

    pub async fn flush(&self) -> Result<(), StoreError> {
        self.rows.flush().await
    }

    pub async fn instances(&self) -> Result<Vec<InstanceInfo>, StoreError> {
        Ok(vec![InstanceInfo {
            name: self.instance.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_ms: self.started_ms,
            heartbeat_ms: now_ms(),
            running: self.line().running.len(),
        }])
    }

    pub fn waiting(&self) -> usize {
        self.line().pending()
    }

    pub fn stats(&self) -> StoreStats {
        self.rows.stats()
    }

    /// Puts the job `id` of `hook` in its lane under `concurrency`, as an admission does (and an
    /// approval, for a job that awaited it): returns the lane's waiting jobs it supersedes, out
    /// of the lane (the caller ends them with [`SqliteStore::supersede`] once the job's own
    /// write is enqueued, so that a crash between the two never leaves the lane's jobs
    /// superseded by nothing), and its running jobs to stop. `Err(waiting)` when a full `queue`
    /// refuses it.
    fn enter_lane(
        &self,
        line: &mut Line,
        hook: &str,
        concurrency: Concurrency,
        id: &JobId,
    ) -> Result<(Vec<JobId>, Vec<(JobId, String)>), usize> {
        let (superseded, cancel) = match line.lanes.admit(hook, concurrency, id.clone()) {
            lanes::Admission::QueueFull { waiting } => return Err(waiting),
            lanes::Admission::Accepted { superseded, cancel } => (superseded, cancel),
        };
        let cancel = cancel
            .into_iter()
            .map(|id| (id, self.instance.to_string()))
            .collect();
        Ok((superseded, cancel))
    }

    /// Ends the waiting jobs [`SqliteStore::enter_lane`] superseded.
    fn supersede(&self, line: &mut Line, superseded: &[JobId]) {
        for old in superseded {
            self.end_waiting(line, old, Status::Superseded);
        }
    }

    /// Ends a job that never started (superseded or cancelled while waiting, or rejected or
    /// expired awaiting approval), already out of the lanes, and returns it.
    fn end_waiting(&self, line: &mut Line, id: &JobId, status: Status) -> Option<Job> {
        let (mut job, _) = line
            .waiting
            .remove(id)
            .or_else(|| line.awaiting.remove(id))?;
        job.finish(Outcome::unrun(status, None), now_ms()).ok()?;
        forget_key(line, &job);
        // On the disk, so that a job cancelled or superseded before it started never runs after
        // a restart.
        if let Some(update) = finished_update(&job) {
            drop(self.rows.update(id, update, Durability::Disk));
        }
        tracing::info!(job_id = %id, status = status.as_str(), "job ended before it started");
        Some(job)
    }
}

impl Line {
    /// Jobs waiting: queued, or awaiting approval (which `max_pending` bounds too).
    fn pending(&self) -> usize {
        self.lanes.waiting() + self.awaiting.len()
    }
}

/// A job that did not succeed gives its duplicate key back, so a redelivery runs again.
fn forget_key(line: &mut Line, job: &Job) {
    if let Some(key) = &job.dedupe_key {
        let slot = (job.hook.clone(), key.clone());
        if line.dedupe.get(&slot) == Some(&job.id) {
            line.dedupe.remove(&slot);
        }
    }
}

/// The row change that records a finished job's end; `None` for a job not finished.
fn finished_update(job: &Job) -> Option<JobUpdate> {
    let JobState::Finished {
        finished_ms,
        outcome,
        ..
    } = &job.state
    else {
        return None;
    };
    Some(JobUpdate::Finished {
        status: outcome.status,
        at_ms: *finished_ms,
        exit_code: outcome.exit_code,
        signal: outcome.signal,
        error: outcome.error.clone(),
        duration_ms: outcome.duration_ms,
        stdout: outcome.stdout.clone(),
        stderr: outcome.stderr.clone(),
    })
}

impl JobRecord {
    /// The row of a new job, with its stored command and whether its end is to be announced.
    fn new(job: &Job, command: String, notify: bool) -> JobRecord {
        let run = job.run();
        let outcome = job.outcome();
        JobRecord {
            id: job.id.clone(),
            hook: job.hook.clone(),
            request_id: job.request_id.clone(),
            status: job.status(),
            dedupe_key: job.dedupe_key.clone(),
            created_ms: job.created_ms,
            started_ms: run.map(|run| run.started_ms),
            instance: run.map(|run| run.instance.clone()),
            attempt: job.attempt,
            attempts: job.attempts,
            next_attempt_ms: job.next_attempt_ms,
            finished_ms: job.finished_ms(),
            exit_code: outcome.and_then(|outcome| outcome.exit_code),
            signal: outcome.and_then(|outcome| outcome.signal),
            error: outcome.and_then(|outcome| outcome.error.clone()),
            duration_ms: outcome.and_then(|outcome| outcome.duration_ms),
            command,
            stdout: outcome.and_then(|outcome| outcome.stdout.clone()),
            stderr: outcome.and_then(|outcome| outcome.stderr.clone()),
            notify,
            approval_until_ms: job.approval_until_ms(),
            announce_wait: notify && job.approval_until_ms().is_some(),
        }
    }

    /// The job this row holds. A row that says `running` or ended after running but names no
    /// instance (one written before instances were recorded) names none.
    fn into_job(self) -> Job {
        let run = self.started_ms.map(|started_ms| crate::job::Run {
            instance: self.instance.clone().unwrap_or_default(),
            started_ms,
        });
        let state = match (self.status, run) {
            (Status::AwaitingApproval, _) => JobState::Awaiting {
                until_ms: self.approval_until_ms.unwrap_or(self.created_ms),
            },
            (Status::Queued, _) | (Status::Running, None) => JobState::Queued,
            (Status::Running, Some(run)) => JobState::Running { run },
            (status, run) => JobState::Finished {
                run,
                finished_ms: self.finished_ms.unwrap_or(self.created_ms),
                outcome: Outcome {
                    status,
                    exit_code: self.exit_code,
                    signal: self.signal,
                    error: self.error,
                    duration_ms: self.duration_ms,
                    stdout: self.stdout,
                    stderr: self.stderr,
                },
            },
        };
        Job {
            id: self.id,
            hook: self.hook,
            request_id: self.request_id,
            dedupe_key: self.dedupe_key,
            created_ms: self.created_ms,
            attempt: self.attempt,
            attempts: self.attempts,
            next_attempt_ms: self
                .next_attempt_ms
                .filter(|_| matches!(state, JobState::Queued)),
            state,
        }
    }
}
