//! The writer thread: owns the connection, serves commands in order, and commits each batch of
//! writes in one transaction (group commit) before answering anyone.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};
use std::vec;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::files::OpenFiles;
use super::{log_path, queries, Counters, Durability, JobRecord, JobUpdate, StoreError};
use crate::job::{JobId, Status};
use crate::store::{DueNotification, NewNotification, NotificationState, Tried};

/// The most commands one batch takes; what is left waits for the next batch.
const MAX_BATCH: usize = 512;

/// How long after the previous batch a batch that nobody waits for may wait for more commands.
/// Each commit writes every page it changed in full, so under load, a job's insert, start and end
/// sharing one commit with other jobs' costs a fraction of committing them apart. When the server
/// is quiet, the previous batch is long past and nothing waits.
const LINGER: Duration = Duration::from_millis(5);

/// Where a command's answer goes. The waiter may have stopped listening, which is fine.
pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// What [`Store`](super::Store) asks of the writer thread.
pub(super) enum Command {
    Write(Write),
    Read(Read),
    /// Holds the writer until `resume` hears something or closes, so a test can line up a batch.
    #[cfg(test)]
    Pause {
        resume: mpsc::Receiver<()>,
    },
}

/// A command that changes the database; it is answered once its transaction has committed.
pub(super) enum Write {
    Insert {
        /// Boxed: a record is large, and every command on the channel is as large as the largest.
        record: Box<JobRecord>,
        durability: Durability,
        reply: Reply<()>,
        /// The waiters of the updates [`fold_updates`] applied to `record`.
        folded: Vec<Reply<()>>,
    },
    Update {
        id: JobId,
        update: JobUpdate,
        durability: Durability,
        reply: Reply<()>,
    },
    CheckWritable {
        reply: Reply<()>,
    },
    Recover {
        now_ms: i64,
        reply: Reply<Vec<JobRecord>>,
    },
    Prune {
        created_before_ms: i64,
        max_jobs: usize,
        reply: Reply<usize>,
    },
    /// Keeps a job's notifications and clears its marks (with `wait`, only its wait's), as one;
    /// on the disk.
    Announce {
        job: JobId,
        notifications: Vec<NewNotification>,
        wait: bool,
        reply: Reply<()>,
    },
    /// Hands out the pending notifications due at `now_ms`, holding each until `held_until_ms`.
    TakeDue {
        now_ms: i64,
        limit: usize,
        held_until_ms: i64,
        reply: Reply<Vec<DueNotification>>,
    },
    /// Keeps what became of a try of a notification; on the disk.
    Tried {
        job: JobId,
        position: u32,
        tried: Tried,
        reply: Reply<()>,
    },
}

/// A command that only reads; it is served after the writes of its batch have committed.
pub(super) enum Read {
    Get {
        id: JobId,
        reply: Reply<Option<JobRecord>>,
    },
    List {
        hook: Option<String>,
        status: Option<Status>,
        before: Option<JobId>,
        limit: usize,
        reply: Reply<Vec<JobRecord>>,
    },
    SucceededKeys {
        reply: Reply<Vec<(String, String, JobId)>>,
    },
    Unannounced {
        limit: usize,
        reply: Reply<Vec<JobRecord>>,
    },
    Notifications {
        jobs: Vec<JobId>,
        reply: Reply<Vec<(JobId, Vec<NotificationState>)>>,
    },
    NextNotificationDue {
        reply: Reply<Option<i64>>,
    },
    Flush {
        reply: Reply<()>,
    },
}

/// Starts the writer thread. It stops once every [`Store`](super::Store) is dropped and the
/// commands they sent are served.
pub(super) fn spawn(
    connection: Connection,
    opened: OpenFiles,
    logs_dir: PathBuf,
    commands: mpsc::Receiver<Command>,
    counters: Arc<Counters>,
) -> io::Result<()> {
    let writer = Writer {
        connection,
        // `schema::open` sets `synchronous=FULL`.
        synchronous: Durability::Disk,
        opened,
        logs_dir,
        counters,
        last_commit: Ok(()),
        last_batch: Instant::now(),
    };
    thread::Builder::new()
        .name("hookrunner-store".to_string())
        .spawn(move || writer.run(commands))?;
    Ok(())
}

struct Writer {
    connection: Connection,
    /// What the connection's `synchronous` setting gives a commit now.
    synchronous: Durability,
    /// The files the connection writes to, checked before every commit that fsyncs.
    opened: OpenFiles,
    logs_dir: PathBuf,
    counters: Arc<Counters>,
    /// How the most recent commit went, which `flush` reports.
    last_commit: Result<(), Arc<rusqlite::Error>>,
    /// When the writer took its previous batch.
    last_batch: Instant,
}

impl Writer {
    fn run(mut self, commands: mpsc::Receiver<Command>) {
        // `recv` goes on returning queued commands after the last sender is gone, so everything
        // sent before the last `Store` was dropped is still served.
        while let Ok(first) = commands.recv() {
            #[cfg(test)]
            if let Command::Pause { resume } = first {
                let _ = resume.recv();
                continue;
            }
            let mut batch = vec![first];
            batch.extend(commands.try_iter().take(MAX_BATCH - 1));
            if !batch.iter().any(Command::is_awaited) {
                linger(&commands, &mut batch, self.last_batch + LINGER);
            }
            self.last_batch = Instant::now();
            self.serve(batch);
        }
        tracing::debug!("the job store's writer stopped");
    }

    /// Commits the batch's writes in one transaction, then serves its reads. So a read may also
    /// see a write enqueued after it, but never misses one enqueued before it.
    fn serve(&mut self, batch: Vec<Command>) {
        let mut writes = Vec::new();
        let mut reads = Vec::new();
        for command in batch {
            match command {
                Command::Write(write) => writes.push(write),
                Command::Read(read) => reads.push(read),
                #[cfg(test)]
                Command::Pause { resume } => {
                    let _ = resume.recv();
                }
            }
        }
        if !writes.is_empty() {
            self.commit(writes);
        }
        for read in reads {
            self.read(read);
        }
    }

    fn commit(&mut self, writes: Vec<Write>) {
        let count = writes.len();
        let writes = fold_updates(writes);
        let durability = Durability::disk_if(writes.iter().any(Write::needs_disk));
        // A write on the disk is only as good as the file a restart opens: a batch that must
        // survive one is refused when the database's paths no longer name the files the
        // connection writes to, before it runs and again after its fsync.
        if let Some(replaced) = self.replaced(durability) {
            for write in writes {
                write.refuse(replaced.error());
            }
            return;
        }
        let mut writes = writes.into_iter();
        let mut pending = Vec::with_capacity(count);
        let ran = self
            .sync_for(durability)
            .and_then(|()| run_transaction(&mut self.connection, &mut writes, &mut pending));
        match ran {
            Ok(()) => {
                self.counters.commits.fetch_add(1, Ordering::Relaxed);
                if durability == Durability::Disk {
                    self.counters.synced.fetch_add(1, Ordering::Relaxed);
                }
                let written = u64::try_from(pending.len()).unwrap_or(u64::MAX);
                self.counters.writes.fetch_add(written, Ordering::Relaxed);
                self.last_commit = Ok(());
                if let Some(replaced) = self.replaced(durability) {
                    for write in pending {
                        write.fail(replaced.error());
                    }
                    return;
                }
                for write in pending {
                    write.committed(&self.logs_dir);
                }
            }
            Err(error) => {
                tracing::error!(
                    %error,
                    writes = count,
                    "the job store could not commit a batch of writes"
                );
                let cause = Arc::new(error);
                for write in pending {
                    write.fail(StoreError::Commit(cause.clone()));
                }
                for write in writes {
                    write.refuse(StoreError::Commit(cause.clone()));
                }
                self.last_commit = Err(cause);
            }
        }
    }

    /// For a `Disk` batch, the database file that is no longer where the connection opened it.
    fn replaced(&self, durability: Durability) -> Option<Replaced> {
        if durability != Durability::Disk {
            return None;
        }
        let path = self.opened.changed()?;
        tracing::error!(
            path = %path.display(),
            "the job database was deleted or replaced under the server; refusing the writes that must survive a restart"
        );
        Some(Replaced(path.to_path_buf()))
    }

    /// Makes the next commit fsync the log (`synchronous=FULL`) or not (`NORMAL`, which in WAL
    /// mode still keeps the database consistent, and makes the commit durable at the next fsync).
    fn sync_for(&mut self, durability: Durability) -> rusqlite::Result<()> {
        if self.synchronous != durability {
            let statement = match durability {
                Durability::Disk => "PRAGMA synchronous = FULL",
                Durability::Os => "PRAGMA synchronous = NORMAL",
            };
            self.connection.prepare_cached(statement)?.execute([])?;
            self.synchronous = durability;
        }
        Ok(())
    }

    fn read(&self, read: Read) {
        let connection = &self.connection;
        match read {
            Read::Get { id, reply } => answer(
                reply,
                queries::get(connection, &id).map_err(StoreError::from),
            ),
            Read::List {
                hook,
                status,
                before,
                limit,
                reply,
            } => answer(
                reply,
                queries::list(connection, hook.as_deref(), status, before.as_ref(), limit)
                    .map_err(StoreError::from),
            ),
            Read::SucceededKeys { reply } => answer(
                reply,
                queries::succeeded_keys(connection).map_err(StoreError::from),
            ),
            Read::Unannounced { limit, reply } => answer(
                reply,
                queries::unannounced(connection, limit).map_err(StoreError::from),
            ),
            Read::Notifications { jobs, reply } => answer(
                reply,
                queries::notifications(connection, &jobs).map_err(StoreError::from),
            ),
            Read::NextNotificationDue { reply } => answer(
                reply,
                queries::next_notification_due(connection).map_err(StoreError::from),
            ),
            Read::Flush { reply } => {
                answer(
                    reply,
                    self.last_commit
                        .clone()
                        .map_err(|cause| StoreError::Commit(cause)),
                );
            }
        }
    }
}

/// Runs `writes` in one `BEGIN IMMEDIATE` … `COMMIT`, moving each write that ran into `pending`.
///
/// A write whose statement fails on its own (a duplicate id, say) is answered at once and the rest
/// go on, since SQLite undid only that statement. A failure that ends the transaction (SQLite rolls
/// back on some I/O errors and a full disk) or a failed commit is returned, and the writes not yet
/// run stay in `writes`.
///
/// `BEGIN` and `COMMIT` are cached statements rather than rusqlite's `Transaction`, which parses
/// them again for every batch (a tenth of the writer's instructions when batches are small).
fn run_transaction(
    connection: &mut Connection,
    writes: &mut vec::IntoIter<Write>,
    pending: &mut Vec<Pending>,
) -> rusqlite::Result<()> {
    if !connection.is_autocommit() {
        // A transaction left open by a ROLLBACK that failed too: end it, or every batch from now
        // on would fail to begin.
        connection.execute_batch("ROLLBACK")?;
    }
    connection.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
    for write in writes.by_ref() {
        match apply(connection, write) {
            Ok(ran) => pending.push(ran),
            Err((error, waiter)) if connection.is_autocommit() => {
                pending.push(waiter);
                return Err(error);
            }
            Err((error, waiter)) => {
                tracing::error!(%error, "the job store refused a write");
                waiter.fail(StoreError::from(error));
            }
        }
    }
    let committed = connection
        .prepare_cached("COMMIT")
        .and_then(|mut commit| commit.execute([]))
        .map(drop);
    if committed.is_err() && !connection.is_autocommit() {
        // A failed COMMIT (SQLITE_BUSY, say) leaves the transaction open: undo it, so the next
        // batch starts clean and these writes' waiters are right to hear that they were lost.
        if let Err(error) = connection.execute_batch("ROLLBACK") {
            tracing::error!(%error, "the job store could not roll back a failed commit");
        }
    }
    committed
}

/// Runs one write's statements; on failure, returns the error with the waiter to tell.
fn apply(connection: &Connection, write: Write) -> Result<Pending, (rusqlite::Error, Pending)> {
    match write {
        Write::Insert {
            record,
            reply,
            folded,
            ..
        } => match queries::insert(connection, &record) {
            Ok(()) => Ok(Pending::Inserted(reply, folded)),
            // The transaction is over (SQLite rolled it back): every write of the batch, the
            // folded updates included, is answered with the commit's failure.
            Err(error) if connection.is_autocommit() => {
                Err((error, Pending::Inserted(reply, folded)))
            }
            Err(error) => {
                // Only this statement failed (a duplicate id, which 96 random bits make
                // theoretical): the updates folded into it are refused like updates of a job the
                // store does not have, although running them would have changed the first row.
                for waiter in folded {
                    answer(waiter, Err(StoreError::UnknownJob(record.id.clone())));
                }
                Err((error, Pending::Written(reply)))
            }
        },
        Write::Update {
            id, update, reply, ..
        } => match queries::update(connection, &id, &update) {
            Ok(true) => Ok(Pending::Written(reply)),
            Ok(false) => Ok(Pending::Missing(reply, id)),
            Err(error) => Err((error, Pending::Written(reply))),
        },
        Write::CheckWritable { reply } => match queries::touch_meta(connection) {
            Ok(()) => Ok(Pending::Written(reply)),
            Err(error) => Err((error, Pending::Written(reply))),
        },
        Write::Recover { now_ms, reply } => {
            match queries::as_one(connection, |connection| {
                queries::recover(connection, now_ms)
            }) {
                Ok(queued) => Ok(Pending::Recovered(reply, queued)),
                Err(error) => Err((error, Pending::Recovered(reply, Vec::new()))),
            }
        }
        Write::Prune {
            created_before_ms,
            max_jobs,
            reply,
        } => match queries::as_one(connection, |connection| {
            queries::prune(connection, created_before_ms, max_jobs)
        }) {
            Ok(deleted) => Ok(Pending::Pruned(reply, deleted)),
            Err(error) => Err((error, Pending::Pruned(reply, Vec::new()))),
        },
        Write::Announce {
            job,
            notifications,
            wait,
            reply,
        } => match queries::as_one(connection, |connection| {
            queries::announce(connection, &job, &notifications, wait)
        }) {
            Ok(true) => Ok(Pending::Written(reply)),
            Ok(false) => Ok(Pending::Missing(reply, job)),
            Err(error) => Err((error, Pending::Written(reply))),
        },
        Write::TakeDue {
            now_ms,
            limit,
            held_until_ms,
            reply,
        } => match queries::as_one(connection, |connection| {
            queries::take_due(connection, now_ms, limit, held_until_ms)
        }) {
            Ok(due) => Ok(Pending::Due(reply, due)),
            Err(error) => Err((error, Pending::Due(reply, Vec::new()))),
        },
        Write::Tried {
            job,
            position,
            tried,
            reply,
        } => match queries::notification_tried(connection, &job, position, &tried) {
            Ok(()) => Ok(Pending::Written(reply)),
            Err(error) => Err((error, Pending::Written(reply))),
        },
    }
}

/// Adds to `batch` the commands that arrive until `deadline`, or until one that someone waits for
/// (which then ends the wait) or a full batch.
fn linger(commands: &mpsc::Receiver<Command>, batch: &mut Vec<Command>, deadline: Instant) {
    while batch.len() < MAX_BATCH {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return;
        };
        match commands.recv_timeout(left) {
            Ok(command) => {
                let awaited = command.is_awaited();
                batch.push(command);
                if awaited {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

impl Command {
    /// Whether someone waits for this command's answer: every read, and every write whose
    /// [`Committed`](super::Committed) is still held. Dropping it makes a write fire-and-forget,
    /// which the engine does for most of its updates; those may wait for company.
    fn is_awaited(&self) -> bool {
        match self {
            Command::Write(write) => write.is_awaited(),
            Command::Read(_) => true,
            #[cfg(test)]
            Command::Pause { .. } => true,
        }
    }
}

/// Applies each update to the insert of the same job earlier in the batch, instead of running it
/// as a statement of its own. A short job's insert, start and end often land in one batch, and are
/// then written as one row rather than three statements. The batch commits as one transaction
/// either way, so no reader can tell the difference.
///
/// Only updates that follow their insert with nothing but inserts and updates between are folded:
/// a prune or a recovery between them sees the job as it was when it was enqueued.
fn fold_updates(writes: Vec<Write>) -> Vec<Write> {
    let mut folded: Vec<Write> = Vec::with_capacity(writes.len());
    // Job id → position in `folded` of its insert.
    let mut inserts: HashMap<JobId, usize> = HashMap::new();
    for write in writes {
        match write {
            Write::Insert { ref record, .. } => {
                // A second insert of the same id fails when it runs; updates go to the first.
                inserts.entry(record.id.clone()).or_insert(folded.len());
                folded.push(write);
            }
            Write::Update {
                id,
                update,
                durability,
                reply,
            } => {
                let target = inserts.get(&id).and_then(|&at| folded.get_mut(at));
                if let Some(Write::Insert {
                    record,
                    durability: insert_durability,
                    folded: waiters,
                    ..
                }) = target
                {
                    update.apply_to(record);
                    if durability == Durability::Disk {
                        *insert_durability = Durability::Disk;
                    }
                    waiters.push(reply);
                } else {
                    folded.push(Write::Update {
                        id,
                        update,
                        durability,
                        reply,
                    });
                }
            }
            other => {
                inserts.clear();
                folded.push(other);
            }
        }
    }
    folded
}

impl Write {
    /// Whether the batch holding this write must fsync before it is answered. Besides the writes
    /// that ask for it, those that change many jobs at once (recovery, pruning), the readiness
    /// check, which must prove that the disk takes writes, and a notification's announcement
    /// and tries' results do. Handing out a try does not: a hold or a count of tries lost to a
    /// power cut only makes the try again.
    fn needs_disk(&self) -> bool {
        match self {
            Write::Insert { durability, .. } | Write::Update { durability, .. } => {
                *durability == Durability::Disk
            }
            Write::CheckWritable { .. }
            | Write::Recover { .. }
            | Write::Prune { .. }
            | Write::Announce { .. }
            | Write::Tried { .. } => true,
            Write::TakeDue { .. } => false,
        }
    }

    fn is_awaited(&self) -> bool {
        match self {
            Write::Insert { reply, folded, .. } => {
                !reply.is_closed() || folded.iter().any(|waiter| !waiter.is_closed())
            }
            Write::Update { reply, .. }
            | Write::CheckWritable { reply }
            | Write::Announce { reply, .. }
            | Write::Tried { reply, .. } => !reply.is_closed(),
            Write::Recover { reply, .. } => !reply.is_closed(),
            Write::Prune { reply, .. } => !reply.is_closed(),
            Write::TakeDue { reply, .. } => !reply.is_closed(),
        }
    }

    /// Answers the waiter with `error` without running the write.
    fn refuse(self, error: StoreError) {
        match self {
            Write::Insert { reply, folded, .. } => {
                Pending::Inserted(reply, folded).fail(error);
            }
            Write::Update { reply, .. }
            | Write::CheckWritable { reply }
            | Write::Announce { reply, .. }
            | Write::Tried { reply, .. } => {
                answer(reply, Err(error));
            }
            Write::Recover { reply, .. } => answer(reply, Err(error)),
            Write::Prune { reply, .. } => answer(reply, Err(error)),
            Write::TakeDue { reply, .. } => answer(reply, Err(error)),
        }
    }
}

/// A database file deleted or replaced under the server, by its path.
struct Replaced(PathBuf);

impl Replaced {
    fn error(&self) -> StoreError {
        StoreError::Replaced {
            path: self.0.clone(),
        }
    }
}

/// A write that ran in the open transaction, with what its waiter hears if the transaction commits.
enum Pending {
    Written(Reply<()>),
    /// An insert, with the waiters of the updates folded into it.
    Inserted(Reply<()>, Vec<Reply<()>>),
    /// An update of a job the store does not have.
    Missing(Reply<()>, JobId),
    Recovered(Reply<Vec<JobRecord>>, Vec<JobRecord>),
    Pruned(Reply<usize>, Vec<JobId>),
    /// Notifications handed out for a try.
    Due(Reply<Vec<DueNotification>>, Vec<DueNotification>),
}

impl Pending {
    fn committed(self, logs_dir: &Path) {
        match self {
            Pending::Written(reply) => answer(reply, Ok(())),
            Pending::Inserted(reply, folded) => {
                answer(reply, Ok(()));
                for reply in folded {
                    answer(reply, Ok(()));
                }
            }
            Pending::Missing(reply, id) => answer(reply, Err(StoreError::UnknownJob(id))),
            Pending::Recovered(reply, queued) => answer(reply, Ok(queued)),
            Pending::Pruned(reply, deleted) => {
                // Only after the commit: had it failed, the jobs would still need their logs.
                remove_logs(logs_dir, &deleted);
                answer(reply, Ok(deleted.len()));
            }
            Pending::Due(reply, due) => answer(reply, Ok(due)),
        }
    }

    fn fail(self, error: StoreError) {
        match self {
            Pending::Written(reply) | Pending::Missing(reply, _) => answer(reply, Err(error)),
            Pending::Inserted(reply, folded) => {
                // Only a failed or refused batch reaches an insert with folded waiters (`apply`
                // answers those of an insert that failed on its own), and its cause is shared.
                for waiter in folded {
                    if let Some(shared) = error.shared() {
                        answer(waiter, Err(shared));
                    }
                }
                answer(reply, Err(error));
            }
            Pending::Recovered(reply, _) => answer(reply, Err(error)),
            Pending::Pruned(reply, _) => answer(reply, Err(error)),
            Pending::Due(reply, _) => answer(reply, Err(error)),
        }
    }
}

fn remove_logs(logs_dir: &Path, deleted: &[JobId]) {
    for id in deleted {
        match std::fs::remove_file(log_path(logs_dir, id)) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => {
                tracing::warn!(job_id = %id, %error, "could not remove a pruned job's log");
            }
        }
    }
}

fn answer<T>(reply: Reply<T>, result: Result<T, StoreError>) {
    let _ = reply.send(result);
}
