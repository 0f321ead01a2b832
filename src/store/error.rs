//! What can go wrong in the job store, whatever the backend, each error saying what to do about
//! it. A backend's own errors are kept as sources, so nothing above the store names a backend.

use std::error::Error;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// A backend's own error.
pub type Cause = Box<dyn Error + Send + Sync>;

use crate::job::JobId;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the state directory `{path}`; check that its parent is writable, or choose another with `--state-dir`")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot create `{path}`; check that the state directory is writable, or choose another with `--state-dir`")]
    CreateFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot make `{path}` private (0700 for directories, 0600 for files); make the server's user its owner, or choose another `--state-dir`")]
    Private {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the state directory `{path}` is shared (its sticky bit is set, like `/tmp`); give hookrunner a directory of its own with `--state-dir`")]
    SharedDir { path: PathBuf },
    #[error("cannot open the job database `{path}`; check that the state directory is writable, or choose another with `--state-dir`")]
    Open {
        path: PathBuf,
        #[source]
        source: Cause,
    },
    /// A zero-length file: SQLite would take it for a new database and the history would be lost.
    #[error("the job database `{path}` is empty (0 bytes), so the jobs it held are gone; move it aside (`mv {path} {path}.empty`, with its `-wal` and `-shm` files if any) and start again to begin a new one")]
    EmptyDatabase { path: PathBuf },
    #[error("the job database `{path}` is not a hookrunner SQLite database, or it is corrupt; move it aside (`mv {path} {path}.broken`, with its `-wal` and `-shm` files if any) and start again to begin a new one, or restore it from a backup")]
    NotADatabase {
        path: PathBuf,
        #[source]
        source: Cause,
    },
    /// The path no longer names the file the store opened: writes would go to a file a restart
    /// does not see.
    #[error("the job database file `{path}` was deleted or replaced while the server ran, so writes would not survive a restart; put the file back, or restart hookrunner to open what is there now")]
    Replaced { path: PathBuf },
    #[error("the job database file `{path}` is {size} bytes, too close to the server's file-size limit ({limit} bytes) to grow; raise the limit (`ulimit -f`, systemd's `LimitFSIZE=`)")]
    FileSizeLimit {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error("cannot write and sync a new file in the state directory `{path}`: the disk may be full or read-only")]
    NoRoom {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// SQLite could not put the database in write-ahead-log mode (some network filesystems).
    #[error(
        "the job database `{path}` cannot use write-ahead logging (it is in `{journal_mode}` mode)"
    )]
    JournalMode { path: PathBuf, journal_mode: String },
    #[error(
        "the job database has schema version {found}, newer than this hookrunner knows ({known})"
    )]
    NewerSchema { found: i64, known: i64 },
    #[error("the job store failed")]
    Database(#[source] Cause),
    /// The transaction holding this write failed, so none of its writes were kept.
    #[error("the job store could not commit")]
    Commit(#[source] Arc<dyn Error + Send + Sync>),
    #[error("no job `{0}` in the store")]
    UnknownJob(JobId),
    /// [`Store::retry`](super::Store::retry) was handed a job that is not queued for a retry.
    #[error("job {0} is not queued for its next attempt, so it cannot be put back in line")]
    NotRetrying(JobId),
    #[error("the job store could not use a file or thread")]
    Io(#[from] io::Error),
    /// The writer thread is gone, so nothing more can be stored or read.
    #[error("the job store has stopped")]
    Closed,
    /// The database server did not answer in time, or refused the connection: the request may be
    /// tried again once it is back. `target` names the host, port and database (never the URL,
    /// which may hold a password).
    #[error("the job store's database cannot be reached ({target})")]
    Unavailable {
        target: String,
        #[source]
        source: Cause,
    },
    /// The database server turned this connection away: a wrong user or password, or no such
    /// database. `target` as for `Unavailable`.
    #[error("the job store's database refused the connection ({target}); check the user, the password and the database name in the store URL")]
    Refused {
        target: String,
        #[source]
        source: Cause,
    },
    #[error("the job store URL is not one PostgreSQL takes; write it as `postgres://USER:PASSWORD@HOST:PORT/DATABASE`")]
    BadUrl(#[source] Cause),
    /// Another live process holds this instance's name in the cluster.
    #[error("another instance named `{name}` is running{heard}; give each instance its own `instance` name")]
    InstanceTaken { name: String, heard: String },
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> StoreError {
        StoreError::Database(Box::new(error))
    }
}

impl StoreError {
    /// The same error for another waiter of the batch it failed, when it is one a batch shares.
    pub(crate) fn shared(&self) -> Option<StoreError> {
        match self {
            StoreError::Commit(cause) => Some(StoreError::Commit(Arc::clone(cause))),
            StoreError::Replaced { path } => Some(StoreError::Replaced { path: path.clone() }),
            _ => None,
        }
    }
}
