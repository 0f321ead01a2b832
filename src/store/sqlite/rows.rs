//! The SQLite side of the store: a handle (`Rows`) on the writer thread that owns the database,
//! and the row it keeps per job (`JobRecord`).
//!
//! The store never blocks the async runtime. One dedicated OS thread (in `writer.rs`) owns the
//! `rusqlite::Connection` and serves commands from a channel; async callers get their answers
//! through `tokio::sync::oneshot`. Writes use group commit: the writer takes every command already
//! waiting, runs all their writes in one `BEGIN IMMEDIATE` … `COMMIT`, and only then answers, so a
//! burst of durable inserts costs a few fsyncs rather than one each. A commit fsyncs only when one
//! of its writes asks for [`Durability::Disk`]; the others are in the operating system's hands
//! when answered (safe from `kill -9`), and on the disk at the next fsync.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;

use super::writer::{self, Command, Read, Reply, Write};
use super::{files, schema};
use crate::job::{JobId, Status};
use crate::store::{Committed, Durability, StoreError, StoreStats};

/// The database file inside the state directory.
pub(super) const DATABASE_FILE: &str = "hookrunner.db";

/// The directory inside the state directory that holds one log file per job.
pub(super) const LOGS_DIR: &str = "logs";

/// One job as the store keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct JobRecord {
    pub id: JobId,
    pub hook: String,
    pub request_id: String,
    pub status: Status,
    pub dedupe_key: Option<String>,
    /// Unix milliseconds, like every `_ms` instant here.
    pub created_ms: i64,
    pub started_ms: Option<i64>,
    /// The instance that ran the job.
    pub instance: Option<String>,
    pub attempt: u32,
    pub attempts: u32,
    /// When a job queued for a retry may run again.
    pub next_attempt_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: Option<u64>,
    /// Opaque JSON text the engine stores to re-run a queued job after a restart. Text, not a
    /// parsed value: it is written once and read back only at a restart, so it is never parsed or
    /// cloned on the way in. Empty in the engine's live copies of a record.
    pub command: String,
    /// The answer-sized output, set when the job ends; the log file has all of it.
    pub stdout: Option<String>,
    pub stderr: Option<String>,
    /// The job's end is still to be announced ([`NewJob::notify`](crate::store::NewJob)): set at
    /// the insert, kept by every update, cleared only by `announce`.
    pub notify: bool,
    /// Until when a job awaiting approval waits (unix ms); kept after it leaves the wait.
    pub approval_until_ms: Option<i64>,
    /// The job's wait for approval is still to be announced: set at the insert of a job
    /// admitted awaiting approval with `notify`, cleared by `announce` of the wait, by its
    /// approval and by any end.
    pub announce_wait: bool,
}

/// A change to a stored job.
#[derive(Clone, Debug)]
pub enum JobUpdate {
    /// The command started on `instance`: the status becomes `running`.
    Started { at_ms: i64, instance: String },
    /// The command ended and the job is queued again for `attempt`, due at `next_attempt_ms`.
    Retried { attempt: u32, next_attempt_ms: i64 },
    /// An admin approved the job awaiting approval: the status becomes `queued`, and its wait
    /// is no longer to be announced.
    Approved,
    /// The job ended with `status`, which should be final.
    Finished {
        status: Status,
        at_ms: i64,
        exit_code: Option<i32>,
        signal: Option<i32>,
        error: Option<String>,
        duration_ms: Option<u64>,
        stdout: Option<String>,
        stderr: Option<String>,
    },
}

impl JobUpdate {
    /// Makes in `record` the change `queries::update` makes in its row.
    pub(super) fn apply_to(self, record: &mut JobRecord) {
        match self {
            JobUpdate::Started { at_ms, instance } => {
                record.status = Status::Running;
                record.started_ms = Some(at_ms);
                record.instance = Some(instance);
                record.next_attempt_ms = None;
            }
            JobUpdate::Retried {
                attempt,
                next_attempt_ms,
            } => {
                record.status = Status::Queued;
                record.attempt = attempt;
                record.next_attempt_ms = Some(next_attempt_ms);
                record.started_ms = None;
                record.instance = None;
            }
            JobUpdate::Approved => {
                record.status = Status::Queued;
                record.announce_wait = false;
            }
            JobUpdate::Finished {
                status,
                at_ms,
                exit_code,
                signal,
                error,
                duration_ms,
                stdout,
                stderr,
            } => {
                record.status = status;
                record.finished_ms = Some(at_ms);
                record.exit_code = exit_code;
                record.signal = signal;
                record.error = error;
                record.duration_ms = duration_ms;
                record.stdout = stdout;
                record.stderr = stderr;
                record.announce_wait = false;
            }
        }
    }
}

/// The counters behind [`StoreStats`], shared by the writer thread and every [`Store`] clone.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) commits: AtomicU64,
    pub(super) synced: AtomicU64,
    pub(super) writes: AtomicU64,
    /// Readiness probes of the disk started (see [`files::probe_room`]), numbering them.
    pub(super) room_probes: AtomicU64,
}

/// A handle on the job store. Clones are cheap and share one writer thread, which commits what is
/// left and exits when the last clone is dropped.
#[derive(Clone)]
pub struct Rows {
    /// Commands for the writer thread, served in the order they were sent.
    commands: mpsc::Sender<Command>,
    state_dir: Arc<PathBuf>,
    pub(super) counters: Arc<Counters>,
    /// The latest readiness probe of the disk, by its number, and its answer.
    room: Arc<tokio::sync::Mutex<Option<(u64, Result<(), StoreError>)>>>,
}

impl fmt::Debug for Rows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rows")
            .field("state_dir", &self.state_dir)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Rows {
    /// Creates the state directory and `logs/` (mode 0700) and the database (0600) and its
    /// schema if missing, making existing ones private, then starts the writer thread. An empty
    /// or corrupt database is refused.
    pub fn open(state_dir: &Path) -> Result<Rows, StoreError> {
        let logs_dir = state_dir.join(LOGS_DIR);
        let database = state_dir.join(DATABASE_FILE);
        files::prepare(state_dir, &logs_dir, &database)?;
        let created = files::create_or_check_database(&database)?;
        let opened = schema::open(&database).and_then(|connection| {
            let files = files::OpenFiles::record(&database)?;
            Ok((connection, files))
        });
        let (connection, opened) = match opened {
            Ok(opened) => opened,
            Err(error) => {
                if created {
                    files::remove_if_empty(&database);
                }
                return Err(error);
            }
        };
        let counters = Arc::new(Counters::default());
        let (commands, receiver) = mpsc::channel();
        writer::spawn(connection, opened, logs_dir, receiver, counters.clone())?;
        Ok(Rows {
            commands,
            state_dir: Arc::new(state_dir.to_path_buf()),
            counters,
            room: Arc::default(),
        })
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Where the job's full output goes: `{state_dir}/logs/{id}.log`.
    pub fn log_path(&self, id: &JobId) -> PathBuf {
        log_path(&self.state_dir.join(LOGS_DIR), id)
    }

    /// Enqueues the insert now, when called; the returned [`Committed`] resolves once the
    /// transaction holding it has committed as `durability` asks. Dropping it is fire-and-forget:
    /// the write still happens.
    pub fn insert(&self, record: JobRecord, durability: Durability) -> Committed {
        let (reply, receiver) = oneshot::channel();
        let record = Box::new(record);
        self.send(Command::Write(Write::Insert {
            record,
            durability,
            reply,
            folded: Vec::new(),
        }));
        Committed::from(receiver)
    }

    /// Enqueues the update now, with the same semantics as [`Store::insert`]. Updates apply in the
    /// order they were enqueued, after any insert enqueued before them.
    pub fn update(&self, id: &JobId, update: JobUpdate, durability: Durability) -> Committed {
        let (reply, receiver) = oneshot::channel();
        let id = id.clone();
        self.send(Command::Write(Write::Update {
            id,
            update,
            durability,
            reply,
        }));
        Committed::from(receiver)
    }

    /// The job, seeing every write enqueued before this call.
    pub async fn get(&self, id: &JobId) -> Result<Option<JobRecord>, StoreError> {
        let id = id.clone();
        self.ask(|reply| Command::Read(Read::Get { id, reply }))
            .await
    }

    /// Newest first (by insertion order), optionally only one hook's or one status's, created
    /// before `before`, at most `limit` of them.
    pub async fn list(
        &self,
        hook: Option<&str>,
        status: Option<Status>,
        before: Option<&JobId>,
        limit: usize,
    ) -> Result<Vec<JobRecord>, StoreError> {
        let hook = hook.map(str::to_string);
        let before = before.cloned();
        self.ask(|reply| {
            Command::Read(Read::List {
                hook,
                status,
                before,
                limit,
                reply,
            })
        })
        .await
    }

    /// For start-up, in one transaction: every `running` job becomes `interrupted` (finished now,
    /// with an error saying why), and every notification held for a try is let go; returns the
    /// `queued` jobs and those awaiting approval, in insertion order.
    pub async fn recover(&self) -> Result<Vec<JobRecord>, StoreError> {
        let now_ms = now_ms();
        self.ask(|reply| Command::Write(Write::Recover { now_ms, reply }))
            .await
    }

    /// `(hook, dedupe_key, id)` of every `succeeded` job that has a dedupe key.
    pub async fn succeeded_keys(&self) -> Result<Vec<(String, String, JobId)>, StoreError> {
        self.ask(|reply| Command::Read(Read::SucceededKeys { reply }))
            .await
    }

    /// Deletes the jobs in a final status that were created more than `max_age` ago or are not
    /// among the newest `max_jobs` jobs overall, with their log files, and the delivered or
    /// failed notifications of every job no longer kept. Queued and running jobs, jobs
    /// awaiting approval, and pending notifications, always stay. Returns how many jobs were deleted.
    pub async fn prune(&self, max_age: Duration, max_jobs: usize) -> Result<usize, StoreError> {
        let max_age_ms = i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
        let created_before_ms = now_ms().saturating_sub(max_age_ms);
        self.ask(|reply| {
            Command::Write(Write::Prune {
                created_before_ms,
                max_jobs,
                reply,
            })
        })
        .await
    }

    /// Resolves when everything enqueued before the call has committed; an error if the last commit
    /// failed.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.ask(|reply| Command::Read(Read::Flush { reply })).await
    }

    /// For `/readyz`, that a durable write can be made now: a write committed with an fsync, to
    /// the database files the store opened (not deleted or replaced), and new room on the disk for
    /// the store to grow into (see [`files::probe_room`]).
    ///
    /// One probe runs at a time, and its answer serves every check that arrived before it started
    /// (so it tells of the disk after they arrived): a burst of `/readyz` requests costs one or
    /// two probes, not a 64 KiB write and an fsync each.
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        let arrived = self.counters.room_probes.load(Ordering::SeqCst);
        self.ask(|reply| Command::Write(Write::CheckWritable { reply }))
            .await?;
        let mut latest = self.room.lock().await;
        if let Some((probe, answer)) = latest.as_ref() {
            if *probe > arrived {
                return answer.as_ref().map_err(files::again).copied();
            }
        }
        let probe = self.counters.room_probes.fetch_add(1, Ordering::SeqCst) + 1;
        let state_dir = Arc::clone(&self.state_dir);
        let answer = tokio::task::spawn_blocking(move || {
            files::probe_room(&state_dir, &state_dir.join(DATABASE_FILE))
        })
        .await
        .map_err(|error| StoreError::Io(io::Error::other(error)))
        .and_then(|answer| answer);
        let given = answer.as_ref().map_err(files::again).copied();
        *latest = Some((probe, answer));
        given
    }

    pub fn stats(&self) -> StoreStats {
        StoreStats {
            commits: self.counters.commits.load(Ordering::Relaxed),
            synced: self.counters.synced.load(Ordering::Relaxed),
            writes: self.counters.writes.load(Ordering::Relaxed),
        }
    }

    /// Sends a command to the writer thread. If the thread is gone, the command and the reply
    /// sender inside it are dropped, so the caller's receiver resolves to [`StoreError::Closed`].
    pub(super) fn send(&self, command: Command) {
        let _ = self.commands.send(command);
    }

    pub(super) async fn ask<T>(
        &self,
        command: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, StoreError> {
        let (reply, receiver) = oneshot::channel();
        self.send(command(reply));
        receiver.await.unwrap_or(Err(StoreError::Closed))
    }
}

pub(super) fn log_path(logs_dir: &Path, id: &JobId) -> PathBuf {
    logs_dir.join(format!("{id}.log"))
}

/// The current time in Unix milliseconds.
pub(super) fn now_ms() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}
