//! The writer thread: owns the connection, serves commands in order, and commits each batch of
//! writes in one transaction (group commit) before answering anyone.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread;
use std::vec;

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::oneshot;

use super::{log_path, queries, Counters, JobRecord, JobUpdate, StoreError};
use crate::job::{JobId, Status};

/// The most commands one batch takes; what is left waits for the next batch.
const MAX_BATCH: usize = 512;

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
        reply: Reply<()>,
    },
    Update {
        id: JobId,
        update: JobUpdate,
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
        limit: usize,
        reply: Reply<Vec<JobRecord>>,
    },
    SucceededKeys {
        reply: Reply<Vec<(String, String, JobId)>>,
    },
    Flush {
        reply: Reply<()>,
    },
}

/// Starts the writer thread. It stops once every [`Store`](super::Store) is dropped and the
/// commands they sent are served.
pub(super) fn spawn(
    connection: Connection,
    logs_dir: PathBuf,
    commands: mpsc::Receiver<Command>,
    counters: Arc<Counters>,
) -> io::Result<()> {
    let writer = Writer {
        connection,
        logs_dir,
        counters,
        last_commit: Ok(()),
    };
    thread::Builder::new()
        .name("hookrunner-store".to_string())
        .spawn(move || writer.run(commands))?;
    Ok(())
}

struct Writer {
    connection: Connection,
    logs_dir: PathBuf,
    counters: Arc<Counters>,
    /// How the most recent commit went, which `flush` reports.
    last_commit: Result<(), Arc<rusqlite::Error>>,
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
        let mut writes = writes.into_iter();
        let mut pending = Vec::with_capacity(count);
        match run_transaction(&mut self.connection, &mut writes, &mut pending) {
            Ok(()) => {
                self.counters.commits.fetch_add(1, Ordering::Relaxed);
                let written = u64::try_from(pending.len()).unwrap_or(u64::MAX);
                self.counters.writes.fetch_add(written, Ordering::Relaxed);
                self.last_commit = Ok(());
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
                limit,
                reply,
            } => answer(
                reply,
                queries::list(connection, hook.as_deref(), status, limit).map_err(StoreError::from),
            ),
            Read::SucceededKeys { reply } => answer(
                reply,
                queries::succeeded_keys(connection).map_err(StoreError::from),
            ),
            Read::Flush { reply } => {
                answer(reply, self.last_commit.clone().map_err(StoreError::Commit));
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
fn run_transaction(
    connection: &mut Connection,
    writes: &mut vec::IntoIter<Write>,
    pending: &mut Vec<Pending>,
) -> rusqlite::Result<()> {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for write in writes.by_ref() {
        match apply(&transaction, write) {
            Ok(ran) => pending.push(ran),
            Err((error, waiter)) if transaction.is_autocommit() => {
                pending.push(waiter);
                return Err(error);
            }
            Err((error, waiter)) => {
                tracing::error!(%error, "the job store refused a write");
                waiter.fail(StoreError::Sqlite(error));
            }
        }
    }
    transaction.commit()
}

/// Runs one write's statements; on failure, returns the error with the waiter to tell.
fn apply(connection: &Connection, write: Write) -> Result<Pending, (rusqlite::Error, Pending)> {
    match write {
        Write::Insert { record, reply } => match queries::insert(connection, &record) {
            Ok(()) => Ok(Pending::Written(reply)),
            Err(error) => Err((error, Pending::Written(reply))),
        },
        Write::Update { id, update, reply } => match queries::update(connection, &id, &update) {
            Ok(true) => Ok(Pending::Written(reply)),
            Ok(false) => Ok(Pending::Missing(reply, id)),
            Err(error) => Err((error, Pending::Written(reply))),
        },
        Write::CheckWritable { reply } => match queries::touch_meta(connection) {
            Ok(()) => Ok(Pending::Written(reply)),
            Err(error) => Err((error, Pending::Written(reply))),
        },
        Write::Recover { now_ms, reply } => match queries::recover(connection, now_ms) {
            Ok(queued) => Ok(Pending::Recovered(reply, queued)),
            Err(error) => Err((error, Pending::Recovered(reply, Vec::new()))),
        },
        Write::Prune {
            created_before_ms,
            max_jobs,
            reply,
        } => match queries::prune(connection, created_before_ms, max_jobs) {
            Ok(deleted) => Ok(Pending::Pruned(reply, deleted)),
            Err(error) => Err((error, Pending::Pruned(reply, Vec::new()))),
        },
    }
}

impl Write {
    /// Answers the waiter with `error` without running the write.
    fn refuse(self, error: StoreError) {
        match self {
            Write::Insert { reply, .. }
            | Write::Update { reply, .. }
            | Write::CheckWritable { reply } => answer(reply, Err(error)),
            Write::Recover { reply, .. } => answer(reply, Err(error)),
            Write::Prune { reply, .. } => answer(reply, Err(error)),
        }
    }
}

/// A write that ran in the open transaction, with what its waiter hears if the transaction commits.
enum Pending {
    Written(Reply<()>),
    /// An update of a job the store does not have.
    Missing(Reply<()>, JobId),
    Recovered(Reply<Vec<JobRecord>>, Vec<JobRecord>),
    Pruned(Reply<usize>, Vec<JobId>),
}

impl Pending {
    fn committed(self, logs_dir: &Path) {
        match self {
            Pending::Written(reply) => answer(reply, Ok(())),
            Pending::Missing(reply, id) => answer(reply, Err(StoreError::UnknownJob(id))),
            Pending::Recovered(reply, queued) => answer(reply, Ok(queued)),
            Pending::Pruned(reply, deleted) => {
                // Only after the commit: had it failed, the jobs would still need their logs.
                remove_logs(logs_dir, &deleted);
                answer(reply, Ok(deleted.len()));
            }
        }
    }

    fn fail(self, error: StoreError) {
        match self {
            Pending::Written(reply) | Pending::Missing(reply, _) => answer(reply, Err(error)),
            Pending::Recovered(reply, _) => answer(reply, Err(error)),
            Pending::Pruned(reply, _) => answer(reply, Err(error)),
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
