//! The store's files on disk: kept private, an empty database refused, the open database watched
//! for being deleted or replaced under the server, and the readiness probe that needs new room.

use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::resource::{getrlimit, Resource, RLIM_INFINITY};

use super::StoreError;

/// The mode of the state directory and `logs/`: the server's user only.
const PRIVATE_DIR: u32 = 0o700;

/// The mode of the database, its `-wal` and `-shm`, and the job logs: they hold rendered
/// environment values and output.
const PRIVATE_FILE: u32 = 0o600;

/// The directory bits that let anyone else in (group and others).
const OPEN_BITS: u32 = 0o077;

/// The sticky bit: a directory shared by many users, like `/tmp`.
const STICKY: u32 = 0o1000;

/// How much new room readiness asks for: a burst of job inserts.
const PROBE_BYTES: usize = 64 * 1024;

/// The start of the readiness probe files' names; a crash may leave one, removed at the next start.
const PROBE_PREFIX: &str = ".readyz-probe-";

/// The files SQLite keeps beside the database, by the suffix of their name.
const SIDE_FILES: [&str; 2] = ["-wal", "-shm"];

/// Creates the state directory and `logs/` (0700), or makes existing ones private, with the
/// database, its side files and the job logs (0600), and removes probe files a crash left.
pub(super) fn prepare(
    state_dir: &Path,
    logs_dir: &Path,
    database: &Path,
) -> Result<(), StoreError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR)
        .create(logs_dir)
        .map_err(|source| StoreError::CreateDir {
            path: logs_dir.to_path_buf(),
            source,
        })?;
    for dir in [state_dir, logs_dir] {
        make_private_dir(dir)?;
    }
    make_private_file(database)?;
    for suffix in SIDE_FILES {
        make_private_file(&side_file(database, suffix))?;
    }
    for entry in read_dir(logs_dir)? {
        make_private_file(&entry.path())?;
    }
    for entry in read_dir(state_dir)? {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(PROBE_PREFIX)
        {
            let _ = fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// Creates a missing database file, empty and private, for SQLite to fill (SQLite gives its side
/// files the database's mode); refuses an existing empty one, whose history is gone. Returns
/// whether it created the file, which [`remove_if_empty`] undoes when SQLite cannot fill it.
pub(super) fn create_or_check_database(database: &Path) -> Result<bool, StoreError> {
    let created = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_FILE)
        .open(database);
    match created {
        Ok(_) => Ok(true),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
            match fs::metadata(database) {
                Ok(metadata) if metadata.len() == 0 => Err(StoreError::EmptyDatabase {
                    path: database.to_path_buf(),
                }),
                // Another kind of trouble is SQLite's to report, with its own words.
                _ => Ok(false),
            }
        }
        Err(source) => Err(StoreError::CreateFile {
            path: database.to_path_buf(),
            source,
        }),
    }
}

/// Removes the database file this start created when it is still empty: a first start that
/// failed (a full disk, a read-only directory) must not leave a file the next start refuses as
/// a database whose history is gone.
pub(super) fn remove_if_empty(database: &Path) {
    if fs::symlink_metadata(database)
        .is_ok_and(|metadata| metadata.is_file() && metadata.len() == 0)
    {
        let _ = fs::remove_file(database);
    }
}

fn read_dir(dir: &Path) -> Result<Vec<fs::DirEntry>, StoreError> {
    let private_error = |source| StoreError::Private {
        path: dir.to_path_buf(),
        source,
    };
    fs::read_dir(dir)
        .and_then(|entries| entries.collect())
        .map_err(private_error)
}

/// Makes a directory 0700, refusing one shared like `/tmp`, which must stay open to its users.
fn make_private_dir(dir: &Path) -> Result<(), StoreError> {
    let private_error = |source| StoreError::Private {
        path: dir.to_path_buf(),
        source,
    };
    let mode = fs::metadata(dir).map_err(private_error)?.mode();
    if mode & STICKY != 0 {
        return Err(StoreError::SharedDir {
            path: dir.to_path_buf(),
        });
    }
    if mode & OPEN_BITS != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(PRIVATE_DIR)).map_err(private_error)?;
    }
    Ok(())
}

/// Makes a regular file 0600 if it exists. Symbolic links are left alone: changing the mode of
/// whatever one points to is not the store's business.
fn make_private_file(path: &Path) -> Result<(), StoreError> {
    let private_error = |source| StoreError::Private {
        path: path.to_path_buf(),
        source,
    };
    let metadata = match fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(private_error(error)),
    };
    if metadata.is_file() && metadata.mode() & 0o777 != PRIVATE_FILE {
        fs::set_permissions(path, fs::Permissions::from_mode(PRIVATE_FILE))
            .map_err(private_error)?;
    }
    Ok(())
}

fn side_file(database: &Path, suffix: &str) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// A file by device and inode: what stays the same however it is renamed, and changes when the
/// path is made to name another file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Identity {
    device: u64,
    inode: u64,
}

impl Identity {
    fn of(path: &Path) -> io::Result<Identity> {
        let metadata = fs::metadata(path)?;
        Ok(Identity {
            device: metadata.dev(),
            inode: metadata.ino(),
        })
    }
}

/// The database and write-ahead log the connection opened. SQLite goes on writing to its open
/// files when their paths are deleted or made to name other files, and a restart opens the paths:
/// so a write is durable only while the paths still name the files it went to.
pub(super) struct OpenFiles {
    files: Vec<(PathBuf, Identity)>,
}

impl OpenFiles {
    /// Records the files `database` and its `-wal` name now, just after the connection opened them.
    pub(super) fn record(database: &Path) -> Result<OpenFiles, StoreError> {
        let mut files = Vec::new();
        for path in [database.to_path_buf(), side_file(database, "-wal")] {
            let identity = Identity::of(&path)?;
            files.push((path, identity));
        }
        Ok(OpenFiles { files })
    }

    /// The first path that no longer names the file opened at start (deleted, replaced, or
    /// unreadable), if any. Two `stat` calls: cheap next to the fsync this comes before.
    pub(super) fn changed(&self) -> Option<&Path> {
        self.files
            .iter()
            .find(|(path, opened)| Identity::of(path).ok().as_ref() != Some(opened))
            .map(|(path, _)| path.as_path())
    }
}

/// Proves that the store can grow: a new file of [`PROBE_BYTES`] in the state directory is written,
/// fsynced and removed (a full or read-only disk, or a quota, fails it), and the database files are
/// that far from the process's file-size limit (`ulimit -f`, systemd's `LimitFSIZE=`).
pub(super) fn probe_room(state_dir: &Path, database: &Path) -> Result<(), StoreError> {
    let (limit, _) = getrlimit(Resource::RLIMIT_FSIZE).unwrap_or((RLIM_INFINITY, RLIM_INFINITY));
    if limit != RLIM_INFINITY {
        for path in [database.to_path_buf(), side_file(database, "-wal")] {
            let size = fs::metadata(&path).map_or(0, |metadata| metadata.len());
            if size.saturating_add(PROBE_BYTES as u64) > limit {
                return Err(StoreError::FileSizeLimit { path, size, limit });
            }
        }
    }
    let probe = state_dir.join(format!("{PROBE_PREFIX}{:016x}", rand::random::<u64>()));
    let written = write_and_sync(&probe);
    let _ = fs::remove_file(&probe);
    written.map_err(|source| StoreError::NoRoom {
        path: state_dir.to_path_buf(),
        source,
    })
}

/// A failure of [`probe_room`] again, for another check that shares the probe.
pub(super) fn again(error: &StoreError) -> StoreError {
    match error {
        StoreError::NoRoom { path, source } => StoreError::NoRoom {
            path: path.clone(),
            source: io::Error::new(source.kind(), source.to_string()),
        },
        StoreError::FileSizeLimit { path, size, limit } => StoreError::FileSizeLimit {
            path: path.clone(),
            size: *size,
            limit: *limit,
        },
        other => StoreError::Io(io::Error::other(other.to_string())),
    }
}

fn write_and_sync(path: &Path) -> io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_FILE)
        .open(path)?;
    file.write_all(&vec![0; PROBE_BYTES])?;
    file.sync_all()
}
