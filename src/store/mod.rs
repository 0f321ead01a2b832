//! The job store: the one boundary between the engine (and HTTP) and where jobs are kept.
//!
//! Two backends sit behind [`Store`]: `sqlite` (the embedded default, one instance) and
//! `postgres` (any number of instances sharing one database). Nothing outside this module names a
//! backend; every caller goes through `Store`, whose methods are the contract both keep:
//!
//! - **Admission is atomic.** [`Store::admit`] decides duplicates, queue limits and what the new
//!   job supersedes, and records the job, as one step: two admissions of one delivery, on any
//!   instances, give one job and one duplicate.
//! - **A job runs at most once.** Only [`Store::claim`] moves a job from queued to running, and it
//!   hands each job to exactly one claimer. It keeps each hook's `concurrency` across everyone who
//!   claims: `queue`, `latest` and `replace` run one job at a time, oldest first; `parallel.limit`
//!   counts every running job of the hook. A job placed on one instance is claimed only there.
//! - **Approval.** A job admitted awaiting approval ([`NewJob::approval_until_ms`]) holds its
//!   duplicate key and counts toward `max_pending`, but no claim hands it out: it enters its
//!   lane only at [`Store::approve`], or ends at [`Store::reject`], [`Store::expire_approvals`]
//!   or [`Store::cancel`]; each job is decided once, by one caller, on any instance. The wait
//!   survives restarts, and no restart or reaping ends it.
//! - **Order.** Writes through one handle apply in the order they were made. A read sees every
//!   write made through the same handle before it.
//! - **Durability.** A write's [`Committed`] resolves once the write is kept as its
//!   [`Durability`] says; a write nobody waits for is still made. An `async` job's insert and
//!   start are [`Durability::Disk`].
//! - **Output.** A job's log is written through [`Store::log_writer`] by whoever runs it and read
//!   through [`Store::read_log`] by anyone.

mod commit;
mod error;
mod log;
mod notification;
pub mod postgres;
pub mod sqlite;

use std::time::Duration;

use std::collections::HashMap;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::command::JobCommand;
use crate::config::Concurrency;
use crate::job::{Job, JobId, Outcome, Status};
pub use commit::{Committed, Durability, StoreStats};
pub use error::StoreError;
pub use log::LogWriter;
pub use notification::{
    message_id, DueNotification, NewNotification, NotificationState, NotificationStatus, Tried,
    WAIT_POSITION,
};

/// A job to admit, with what it needs to run and how it is scheduled.
pub struct NewJob {
    /// The job, queued.
    pub job: Job,
    /// What the job runs. A command that runs after a restart (an `async` job's) makes the job
    /// durable: its insert and its start are on the disk before [`Admission::Accepted`]'s
    /// `committed` and [`Claimed::started`] resolve.
    pub command: JobCommand,
    /// How the hook is scheduled; the latest admission's mode decides for the hook's queue.
    pub concurrency: Concurrency,
    /// Who may claim the job.
    pub placement: Placement,
    /// The caller holds a free slot for this job: the store may record it running on the caller
    /// at once, when nothing of its hook waits ahead of it, and hand it back as
    /// [`Admission::Accepted`]'s `started`, which saves a claim. A backend may always decline;
    /// the job is then queued, and the slot is the caller's again.
    pub start_here: bool,
    /// The job's hook has a `notify` list: its end, however it comes, is kept as still to be
    /// announced, until [`Store::announce`] keeps its notifications. A job admitted awaiting
    /// approval also keeps its wait as still to be announced.
    pub notify: bool,
    /// The hook asks for an admin's approval (SPEC §15): the job is admitted awaiting it until
    /// this instant (unix ms), in [`JobState::Awaiting`](crate::job::JobState). Its duplicate
    /// key is taken and it counts toward `max_pending`, but its lane's rules wait for
    /// [`Store::approve`]: nothing claims it, and `start_here` does not apply.
    pub approval_until_ms: Option<i64>,
}

/// Which instances may claim a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Whichever instance has room.
    Any,
    /// Only this one: a `wait` or `stream` job (the client's connection is there), or one copy of
    /// a `run_on: all` job. Its concurrency counts per instance for `run_on: all` copies.
    On {
        instance: String,
        per_instance: bool,
    },
}

/// What admitting a job decided. Only `Accepted` recorded anything.
#[derive(Debug)]
pub enum Admission {
    Accepted {
        /// Resolves once the job is kept as [`NewJob::durable`] asks.
        committed: Committed,
        /// Waiting jobs of the hook this one superseded (`latest`, `replace`): already recorded
        /// `superseded`.
        superseded: Vec<JobId>,
        /// Running jobs of the hook that must stop (`replace`), with the instance running each:
        /// the store tells the other instances; the caller stops its own.
        cancel: Vec<(JobId, String)>,
        /// The job itself, recorded running on the caller, when [`NewJob::start_here`] asked and
        /// the store took it: the caller starts it in the slot it held.
        started: Option<Box<Claimed>>,
    },
    /// The same delivery is already queued, running or succeeded: nothing new runs.
    Duplicate(JobId),
    /// `queue` mode and the hook's queue is full.
    QueueFull { waiting: usize },
    /// `max_pending` jobs are waiting already.
    ServerFull { pending: usize },
}

/// A job [`Store::claim`] handed to its caller, now recorded running on it.
#[derive(Debug)]
pub struct Claimed {
    pub job: Job,
    pub command: JobCommand,
    /// For a durable job, resolves once its start is on the disk: its command must not run before.
    pub started: Option<Committed>,
}

/// What [`Store::retry`] did with a job whose run ended with a status its hook retries.
#[derive(Debug)]
pub enum Retried {
    /// It waits for its next attempt; `committed` resolves once that is on the disk.
    Queued { committed: Committed },
    /// A newer job of its hook waits already (`latest`, `replace`), which the retry would have
    /// superseded: the retry is recorded `superseded` instead.
    Superseded(Box<Job>),
    /// This instance no longer holds the job (another one ended it): nothing was recorded.
    NotHeld,
}

/// What [`Store::approve`] did.
#[derive(Debug)]
pub enum Approval {
    /// The job is queued now, under its lane's rules as if it had just been admitted:
    /// `superseded` waiting jobs of the lane are recorded `superseded` (`latest`, `replace`), and
    /// `cancel` running ones must stop (`replace`; the store tells the other instances, the
    /// caller stops its own).
    Approved {
        job: Job,
        superseded: Vec<JobId>,
        cancel: Vec<(JobId, String)>,
    },
    /// `queue` mode and the lane's queue is full: the job still awaits approval.
    QueueFull {
        waiting: usize,
    },
    /// The job is kept but does not await approval (approved already, or ended).
    NotAwaiting(Job),
    NotFound,
}

/// What [`Store::reject`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Decided {
    /// The job awaited approval and now ended (`rejected`).
    Ended(Job),
    /// The job is kept but does not await approval.
    NotAwaiting(Job),
    NotFound,
}

/// What [`Store::expire_approvals`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Expiry {
    /// The jobs that ended `expired` in this call, each reported by one caller only.
    pub expired: Vec<Job>,
    /// The earliest end of the waits still under way (unix ms): the caller calls again then.
    pub next_ms: Option<i64>,
}

/// What [`Store::work_waiting`] saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkWaiting {
    /// Jobs this instance may claim now, at most the number asked for.
    pub now: usize,
    /// When the first job waiting for a retry becomes due (unix ms), if one waits: the caller
    /// looks again then.
    pub next_due_ms: Option<i64>,
}

/// What [`Store::cancel`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum CancelResult {
    /// It was waiting; it is now `cancelled` and will never run.
    Dequeued(Box<Job>),
    /// It is running on `instance`, which has been asked to stop it (the caller stops its own).
    Running {
        instance: String,
    },
    AlreadyFinished(Status),
    NotFound,
}

/// Which jobs [`Store::list`] returns: newest first, created before `before` if given.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    pub hook: Option<String>,
    pub status: Option<Status>,
    pub before: Option<JobId>,
    pub limit: usize,
}

/// One page of jobs, and the id to pass as `before` for the next (`None` on the last page).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    pub jobs: Vec<Job>,
    pub next: Option<JobId>,
}

/// Something another instance did that this one must act on (PostgreSQL only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreEvent {
    /// Jobs may be waiting that this instance could claim.
    Work,
    /// Stop this job if it runs here.
    Cancel(JobId),
    /// This job ended without running here (superseded or cancelled elsewhere): re-read it.
    Ended(JobId),
}

/// An instance of the cluster, as `GET /instances` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceInfo {
    pub name: String,
    pub version: String,
    pub started_ms: i64,
    pub heartbeat_ms: i64,
    pub running: usize,
}

/// A handle on the job store. Clones are cheap and share one backend.
#[derive(Clone, Debug)]
pub enum Store {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

/// Calls the same method on whichever backend this is.
macro_rules! backend {
    ($store:expr, $backend:ident => $call:expr) => {
        match $store {
            Store::Sqlite($backend) => $call,
            Store::Postgres($backend) => $call,
        }
    };
}

impl Store {
    /// Opens the SQLite store in `state_dir` for the instance named `instance`.
    pub fn sqlite(state_dir: &std::path::Path, instance: &str) -> Result<Store, StoreError> {
        Ok(Store::Sqlite(sqlite::SqliteStore::open(
            state_dir, instance,
        )?))
    }

    /// Connects to the PostgreSQL store at `url` (never logged: it may hold a password) as the
    /// instance named `instance`, which says it is alive every `heartbeat` and is taken for dead
    /// by the others once unheard of for `lease`. Refused while another live process holds the
    /// name.
    pub async fn postgres(
        url: &str,
        instance: &str,
        heartbeat: Duration,
        lease: Duration,
    ) -> Result<Store, StoreError> {
        Ok(Store::Postgres(
            postgres::PgStore::open(url, instance, heartbeat, lease).await?,
        ))
    }

    /// Which backend this is, for logs and metrics: `sqlite` or `postgres`.
    pub fn kind(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// This instance's name, which [`Run::instance`](crate::job::Run) records.
    pub fn instance(&self) -> &str {
        backend!(self, store => store.instance())
    }

    /// Records `new` unless it is a duplicate or a limit refuses it; see [`Admission`].
    pub async fn admit(&self, new: NewJob, max_pending: usize) -> Result<Admission, StoreError> {
        backend!(self, store => store.admit(new, max_pending).await)
    }

    /// Claims at most `free` queued jobs this instance may run, oldest first within what each
    /// hook's concurrency lets start now, and records them running here.
    pub async fn claim(&self, free: usize) -> Result<Vec<Claimed>, StoreError> {
        backend!(self, store => store.claim(free).await)
    }

    /// The caller found work it had no room for: the next [`Store::work_waiting`] asks again.
    pub fn look_again(&self) {
        if let Store::Postgres(store) = self {
            store.look_again();
        }
    }

    /// Whether this backend may start a job at its admission ([`NewJob::start_here`]): the
    /// embedded one never does (its claim is decided in memory and costs nothing), so the caller
    /// need not hold a slot for it.
    pub fn starts_at_admission(&self) -> bool {
        matches!(self, Store::Postgres(_))
    }

    /// How many jobs this instance may claim are waiting, at most `up_to` (a bound, not a
    /// promise: a claim may find fewer, or more arrive): a look that costs less than a claim and
    /// takes no lock, so a caller holds slots only for work there is, and skips the claim when
    /// there is none. A job queued after the look wakes the caller again; a job waiting for a
    /// retry does not, so the look says when the first becomes due.
    pub async fn work_waiting(&self, up_to: usize) -> Result<WorkWaiting, StoreError> {
        match self {
            Store::Sqlite(store) => Ok(store.work_waiting(up_to)),
            Store::Postgres(store) => store.work_waiting(up_to).await,
        }
    }

    /// Puts a job this instance ran back in line for its next attempt: `job` is in its queued
    /// state after [`Job::retry`], and `command` is what it runs. Fenced like [`Store::finish`]:
    /// only a job running on this instance. The retry enters its hook's concurrency like a new
    /// trigger, and no claim hands it out before its `next_attempt_ms`.
    pub async fn retry(&self, job: &Job, command: &JobCommand) -> Result<Retried, StoreError> {
        backend!(self, store => store.retry(job, command).await)
    }

    /// Records the end of a job this instance ran, or of a queued job that never ran (which must
    /// still be queued). `job` is in its `Finished` state. A job that did not succeed gives its
    /// duplicate key back, so a redelivery runs again.
    pub fn finish(&self, job: &Job, durability: Durability) -> Committed {
        backend!(self, store => store.finish(job, durability))
    }

    /// Approves a job awaiting approval, as one step: its lane's rules apply now, exactly as at
    /// the admission of a new job (a full `queue` refuses, and the job goes on awaiting), then
    /// it is queued and claimers are woken. See [`Approval`].
    pub async fn approve(
        &self,
        id: &JobId,
        concurrency: Concurrency,
    ) -> Result<Approval, StoreError> {
        backend!(self, store => store.approve(id, concurrency).await)
    }

    /// Ends a job awaiting approval as `rejected`: it never runs, gives its duplicate key back,
    /// and its end is announced like any other (with [`NewJob::notify`]).
    pub async fn reject(&self, id: &JobId) -> Result<Decided, StoreError> {
        backend!(self, store => store.reject(id).await)
    }

    /// Ends as `expired` (like [`Store::reject`] otherwise, its `finished_ms` the time it is
    /// done) every job awaiting approval whose wait ends at `now_ms` or before. Instances calling it at once each report different jobs.
    pub async fn expire_approvals(&self, now_ms: i64) -> Result<Expiry, StoreError> {
        backend!(self, store => store.expire_approvals(now_ms).await)
    }

    /// Dequeues a waiting job (queued or awaiting approval), or asks the instance running it to
    /// stop it.
    pub async fn cancel(&self, id: &JobId) -> Result<CancelResult, StoreError> {
        backend!(self, store => store.cancel(id).await)
    }

    pub async fn get(&self, id: &JobId) -> Result<Option<Job>, StoreError> {
        backend!(self, store => store.get(id).await)
    }

    /// The command a job was admitted with, as it was rendered then (a re-run runs it again).
    /// `None` for an unknown job, and for one whose command was never kept: a `wait` or `stream`
    /// job's, which does not run after a restart. The command stays as long as the job does.
    pub async fn command(&self, id: &JobId) -> Result<Option<JobCommand>, StoreError> {
        backend!(self, store => store.command(id).await)
    }

    pub async fn list(&self, query: ListQuery) -> Result<Page, StoreError> {
        backend!(self, store => store.list(query).await)
    }

    /// For start-up: the jobs a previous run of this instance left running become `interrupted`,
    /// and so do its queued jobs that only it could run and that do not run after a restart (a
    /// `wait` or `stream` job's client is gone). Returns the queued jobs put back in line (under
    /// `concurrency_of` their hook) that only this instance holds, oldest first. The
    /// notifications a previous run of this instance held for a try are let go, to be tried again.
    pub async fn recover(
        &self,
        concurrency_of: &(dyn Fn(&str) -> Concurrency + Sync),
    ) -> Result<Vec<Job>, StoreError> {
        backend!(self, store => store.recover(concurrency_of).await)
    }

    /// Where the output of a job this instance runs goes.
    pub fn log_writer(&self, id: &JobId) -> LogWriter {
        backend!(self, store => store.log_writer(id))
    }

    /// At most 64 KiB of a job's log from byte `offset`; empty at its end (or when it has none).
    pub async fn read_log(&self, id: &JobId, offset: u64) -> Result<Bytes, StoreError> {
        backend!(self, store => store.read_log(id, offset).await)
    }

    /// The last `max` bytes of a job's log (or all of it, when shorter), and how many bytes come
    /// before them. Found in a number of reads that grows with the logarithm of the log's size
    /// (a doubling search for its end, then a halving one), never by reading it all.
    pub async fn read_log_tail(
        &self,
        id: &JobId,
        max: usize,
    ) -> Result<(Vec<u8>, u64), StoreError> {
        let max = max.max(1) as u64;
        let has_data_at = |offset: u64| async move {
            self.read_log(id, offset)
                .await
                .map(|piece| !piece.is_empty())
        };
        // Invariant: there is data at `low` (or `low` is 0), and none at `high`.
        let (mut low, mut high) = (0u64, max);
        while has_data_at(high).await? {
            low = high;
            high = high.saturating_mul(2);
        }
        while high - low > max {
            let middle = low + (high - low) / 2;
            if has_data_at(middle).await? {
                low = middle;
            } else {
                high = middle;
            }
        }
        // The end lies in (low, high], and high - low <= max: reading from `max` before the
        // earliest it can be reads at most twice `max`, of which the last `max` are kept.
        let start = (low + 1).saturating_sub(max);
        let mut tail = Vec::new();
        loop {
            let piece = self.read_log(id, start + tail.len() as u64).await?;
            if piece.is_empty() {
                break;
            }
            tail.extend_from_slice(&piece);
        }
        let extra = tail.len().saturating_sub(max as usize);
        tail.drain(..extra);
        Ok((tail, start + extra as u64))
    }

    /// Deletes the finished jobs (but those whose end is still to be announced; never a job
    /// awaiting approval) created more
    /// than `max_age` ago or not among the newest
    /// `max_jobs`, with their output and their delivered or failed notifications (a pending one
    /// stays until it is delivered or given up, then goes at a later prune); returns how many
    /// jobs.
    pub async fn prune(&self, max_age: Duration, max_jobs: usize) -> Result<usize, StoreError> {
        backend!(self, store => store.prune(max_age, max_jobs).await)
    }

    /// Jobs with something still to announce ([`NewJob::notify`]), at most `limit`: finished
    /// jobs whose end is not announced yet, oldest end first, and jobs awaiting approval whose
    /// wait is not announced yet (their [`Job::status`] tells which). A wait that ended (the job
    /// was approved, or ended) before it was announced is no longer returned. Another instance
    /// may be announcing the same ones.
    pub async fn unannounced(&self, limit: usize) -> Result<Vec<Job>, StoreError> {
        backend!(self, store => store.unannounced(limit).await)
    }

    /// Keeps the notifications of a finished job's end, pending and due at once, and marks its
    /// end announced (and its wait, if that was not), in one durable transaction. Given a job
    /// awaiting approval, it keeps the notifications of its wait and marks only the wait
    /// announced. A notification the job already has (the same
    /// `position`, kept by an earlier call here or on another instance) is left as it is, so
    /// announcing twice keeps one of each. An empty list just marks it announced.
    pub async fn announce(
        &self,
        job: &Job,
        notifications: Vec<NewNotification>,
    ) -> Result<(), StoreError> {
        backend!(self, store => store.announce(job, notifications).await)
    }

    /// Hands out at most `limit` pending notifications due at `now_ms` (unix ms), oldest due
    /// first, for one try each: each one's `attempts` counts this try, and it is held by this
    /// instance for `hold` (no other call hands it out meanwhile, on any instance) or until
    /// [`Store::notification_tried`] keeps the try's result. A hold left by a deliverer that
    /// died ends after `hold`, or at this instance's next [`Store::recover`].
    pub async fn due_notifications(
        &self,
        now_ms: i64,
        limit: usize,
        hold: Duration,
    ) -> Result<Vec<DueNotification>, StoreError> {
        backend!(self, store => store.due_notifications(now_ms, limit, hold).await)
    }

    /// Keeps what became of a try of the notification `position` of `job`, and lets go of it;
    /// durable.
    pub async fn notification_tried(
        &self,
        job: &JobId,
        position: u32,
        tried: Tried,
    ) -> Result<(), StoreError> {
        backend!(self, store => store.notification_tried(job, position, tried).await)
    }

    /// The notifications of each of `jobs` that has any, by `position`.
    pub async fn notifications(
        &self,
        jobs: &[JobId],
    ) -> Result<HashMap<JobId, Vec<NotificationState>>, StoreError> {
        backend!(self, store => store.notifications(jobs).await)
    }

    /// When the first pending notification is due (unix ms), if one is, held ones included: the
    /// deliverer sleeps until then.
    pub async fn next_notification_due(&self) -> Result<Option<i64>, StoreError> {
        backend!(self, store => store.next_notification_due().await)
    }

    /// For `/readyz`: that a durable write can be made now.
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        backend!(self, store => store.check_writable().await)
    }

    /// Resolves once every write made before it is kept; the error of the last one that failed.
    pub async fn flush(&self) -> Result<(), StoreError> {
        backend!(self, store => store.flush().await)
    }

    /// The instances of the cluster (just this one for SQLite), with their running jobs.
    pub async fn instances(&self) -> Result<Vec<InstanceInfo>, StoreError> {
        backend!(self, store => store.instances().await)
    }

    /// What other instances ask of this one; `None` for a backend without others.
    pub fn events(&self) -> Option<mpsc::UnboundedReceiver<StoreEvent>> {
        match self {
            Store::Sqlite(_) => None,
            Store::Postgres(store) => store.events(),
        }
    }

    /// Stops heartbeats and leaves the cluster (nothing for SQLite). Call after the last job ended.
    pub async fn close(&self) {
        match self {
            Store::Sqlite(_) => {}
            Store::Postgres(store) => store.close().await,
        }
    }

    /// Jobs waiting to be claimed or awaiting approval, as last known (every instance's, for
    /// PostgreSQL).
    pub fn waiting(&self) -> usize {
        backend!(self, store => store.waiting())
    }

    pub fn stats(&self) -> StoreStats {
        backend!(self, store => store.stats())
    }
}

/// Reads back the `command` column of a job: `None` when only its not running after a restart
/// was kept. A command that cannot be read is a corrupt row.
fn read_command(text: &str) -> Result<Option<JobCommand>, StoreError> {
    JobCommand::from_stored(text).map_err(|error| StoreError::Database(Box::new(error)))
}

/// Reads back a queued job's stored command at a restart, or the outcome the job ends with
/// instead: `interrupted` for a job that does not run after a restart, `failed` for a command
/// that cannot be read.
fn stored_command(text: &str) -> Result<JobCommand, Outcome> {
    match JobCommand::from_stored(text) {
        Ok(Some(command)) => Ok(command),
        Ok(None) => Err(Outcome::unrun(
            Status::Interrupted,
            Some(
                "the server stopped before this job started; only `async` jobs run after a restart"
                    .into(),
            ),
        )),
        Err(error) => {
            tracing::error!(%error, "a queued job's command cannot be read back; marking it failed");
            Err(Outcome::unrun(
                Status::Failed,
                Some(format!(
                    "the stored command could not be read back: {error}"
                )),
            ))
        }
    }
}
