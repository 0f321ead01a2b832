//! Where a running job's output is kept, whatever the backend: [`LogWriter`] takes the bytes the
//! job's sink lets through (capped by `max_output` before they get here).

use std::fs::File;
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;

/// How much of a log one read returns.
pub const LOG_READ_SIZE: usize = 64 << 10;

/// Appends one job's output to where its backend keeps it.
pub enum LogWriter {
    /// A file in the state directory (SQLite), created at the first output so a silent command
    /// costs no file.
    File { path: PathBuf, file: Option<File> },
    /// Rows of the database (PostgreSQL), gathered and written in order through the store's
    /// outbox, all of them before the job's end.
    Rows(super::postgres::RowsWriter),
}

impl LogWriter {
    pub fn file(path: PathBuf) -> LogWriter {
        LogWriter::File { path, file: None }
    }

    /// Appends `data`. After an error, the caller stops writing.
    pub fn append(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            LogWriter::File { path, file } => {
                let file = match file {
                    Some(file) => file,
                    None => file.insert(create_log(path)?),
                };
                file.write_all(data)
            }
            LogWriter::Rows(rows) => rows.append(data),
        }
    }

    /// Where the log goes, for error messages.
    pub fn describe(&self) -> String {
        match self {
            LogWriter::File { path, .. } => path.display().to_string(),
            LogWriter::Rows(rows) => rows.describe(),
        }
    }
}

/// Creates a job's log file, readable by the server's user only (it holds the job's output), or
/// opens it to append: a job's next attempt adds to the log of the ones before.
fn create_log(path: &PathBuf) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}
