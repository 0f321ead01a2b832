//! The database file: connection settings, the schema and how a `jobs` row maps to a [`JobRecord`].

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OptionalExtension, TransactionBehavior};

use super::StoreError;

/// The schema this code reads and writes, kept in `meta` under `schema_version`: the number of
/// [`MIGRATIONS`] applied.
pub(super) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// How long a statement waits for a lock another connection holds before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_millis(5000);

/// Enough room for every distinct statement the writer prepares, so none is ever re-prepared.
const STATEMENT_CACHE_CAPACITY: usize = 64;

/// The schema, one step per version: a database at version `n` gets `MIGRATIONS[n..]`, each in the
/// transaction that records the new version. Steps are only ever appended.
///
/// `seq` keeps insertion order, which `list` and `recover` sort by; ids are random. The status
/// strings are those of [`Status::as_str`](crate::job::Status::as_str), and a notification's those
/// of [`NotificationStatus::as_str`](crate::store::NotificationStatus::as_str).
const MIGRATIONS: [&str; 5] = [
    "
    CREATE TABLE jobs (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        id          TEXT UNIQUE NOT NULL,
        hook        TEXT NOT NULL,
        request_id  TEXT NOT NULL,
        status      TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed',
                        'timed_out', 'cancelled', 'superseded', 'interrupted')),
        dedupe_key  TEXT,
        created_ms  INTEGER NOT NULL,
        started_ms  INTEGER,
        finished_ms INTEGER,
        exit_code   INTEGER,
        signal      INTEGER,
        error       TEXT,
        duration_ms INTEGER,
        command     TEXT NOT NULL,
        stdout      TEXT,
        stderr      TEXT
    );
    CREATE INDEX jobs_by_hook ON jobs (hook, seq);
    CREATE INDEX jobs_by_status ON jobs (status);
    CREATE INDEX jobs_by_dedupe_key ON jobs (hook, dedupe_key) WHERE dedupe_key IS NOT NULL;
    ",
    // Version 2: who ran a job, and its attempts.
    "
    ALTER TABLE jobs ADD COLUMN instance TEXT;
    ALTER TABLE jobs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE jobs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1;
    ",
    // Version 3: when a job queued for a retry may run again (unix ms).
    "
    ALTER TABLE jobs ADD COLUMN next_attempt_ms INTEGER;
    ",
    // Version 4: the notification outbox (`store::notification`). `jobs.notify` is 1 while a
    // job's end is still to be announced; only the ended ones are in `jobs_to_announce`, so
    // finding them never reads another job (a long queue of a notifying hook included). A job
    // without the mark never enters it.
    // A notification has no foreign key to its job: a pending one outlives its pruned job.
    // `notifications_due` holds only pending ones, by when each is due (its hold's end while
    // held), which is what handing out and sleeping ask.
    "
    ALTER TABLE jobs ADD COLUMN notify INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX jobs_to_announce ON jobs (seq)
        WHERE notify = 1 AND status NOT IN ('queued', 'running');
    CREATE TABLE notifications (
        job           TEXT NOT NULL,
        position      INTEGER NOT NULL,
        hook          TEXT NOT NULL,
        target        TEXT NOT NULL,
        route         TEXT NOT NULL,
        status        TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
        attempts      INTEGER NOT NULL DEFAULT 0,
        created_ms    INTEGER NOT NULL,
        expires_ms    INTEGER NOT NULL,
        next_at_ms    INTEGER,
        held_until_ms INTEGER,
        last_error    TEXT,
        body          BLOB NOT NULL,
        env           TEXT NOT NULL,
        PRIMARY KEY (job, position)
    );
    CREATE INDEX notifications_due
        ON notifications (coalesce(held_until_ms, next_at_ms), job, position)
        WHERE status = 'pending';
    ",
    // Version 5: approvals (SPEC §15). Three statuses join the `status` check, which SQLite
    // cannot alter: the table is rebuilt with it (its rows, `seq` and indexes kept).
    // `approval_until_ms` is when a job awaiting approval expires; `announce_wait` marks a wait
    // still to be announced (`store::notification`), and only marked jobs are in
    // `jobs_wait_to_announce`. A job awaiting approval with `notify` is not an end to announce.
    "
    CREATE TABLE jobs_new (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        id          TEXT UNIQUE NOT NULL,
        hook        TEXT NOT NULL,
        request_id  TEXT NOT NULL,
        status      TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed',
                        'timed_out', 'cancelled', 'superseded', 'interrupted',
                        'awaiting_approval', 'rejected', 'expired')),
        dedupe_key  TEXT,
        created_ms  INTEGER NOT NULL,
        started_ms  INTEGER,
        finished_ms INTEGER,
        exit_code   INTEGER,
        signal      INTEGER,
        error       TEXT,
        duration_ms INTEGER,
        command     TEXT NOT NULL,
        stdout      TEXT,
        stderr      TEXT,
        instance    TEXT,
        attempt     INTEGER NOT NULL DEFAULT 1,
        attempts    INTEGER NOT NULL DEFAULT 1,
        next_attempt_ms INTEGER,
        notify      INTEGER NOT NULL DEFAULT 0,
        approval_until_ms INTEGER,
        announce_wait INTEGER NOT NULL DEFAULT 0
    );
    INSERT INTO jobs_new (seq, id, hook, request_id, status, dedupe_key, created_ms, started_ms,
        finished_ms, exit_code, signal, error, duration_ms, command, stdout, stderr, instance,
        attempt, attempts, next_attempt_ms, notify)
    SELECT seq, id, hook, request_id, status, dedupe_key, created_ms, started_ms, finished_ms,
        exit_code, signal, error, duration_ms, command, stdout, stderr, instance, attempt,
        attempts, next_attempt_ms, notify
    FROM jobs;
    UPDATE sqlite_sequence
        SET seq = max(seq, (SELECT seq FROM sqlite_sequence WHERE name = 'jobs'))
        WHERE name = 'jobs_new';
    DROP TABLE jobs;
    ALTER TABLE jobs_new RENAME TO jobs;
    CREATE INDEX jobs_by_hook ON jobs (hook, seq);
    CREATE INDEX jobs_by_status ON jobs (status);
    CREATE INDEX jobs_by_dedupe_key ON jobs (hook, dedupe_key) WHERE dedupe_key IS NOT NULL;
    CREATE INDEX jobs_to_announce ON jobs (seq)
        WHERE notify = 1 AND status NOT IN ('queued', 'running', 'awaiting_approval');
    CREATE INDEX jobs_wait_to_announce ON jobs (seq) WHERE announce_wait = 1;
    ",
];

/// Opens (creating if missing) the database at `path` with the store's settings and schema.
pub(super) fn open(path: &Path) -> Result<Connection, StoreError> {
    let open_error = |source: rusqlite::Error| {
        let path = path.to_path_buf();
        match source.sqlite_error_code() {
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
                StoreError::NotADatabase {
                    path,
                    source: Box::new(source),
                }
            }
            _ => StoreError::Open {
                path,
                source: Box::new(source),
            },
        }
    };
    let mut connection = Connection::open(path).map_err(open_error)?;
    let journal_mode = configure(&connection).map_err(open_error)?;
    if !journal_mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::JournalMode {
            path: path.to_path_buf(),
            journal_mode,
        });
    }
    let found = migrate(&mut connection, SCHEMA_VERSION).map_err(open_error)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            found,
            known: SCHEMA_VERSION,
        });
    }
    Ok(connection)
}

/// Applies the connection settings and returns the journal mode SQLite actually chose.
fn configure(connection: &Connection) -> rusqlite::Result<String> {
    connection.busy_timeout(BUSY_TIMEOUT)?;
    // WAL makes a commit one append to the log; FULL fsyncs the log at every commit, so a write
    // whose waiter was answered survives kill -9 and power loss.
    let journal_mode =
        connection.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    connection.pragma_update(None, "synchronous", "FULL")?;
    connection.pragma_update(None, "foreign_keys", "ON")?;
    // The `status IN (…)` check stays in the schema, for anyone who edits the file by hand, but this
    // connection skips it: it only ever writes `Status::as_str` values, and SQLite evaluates an
    // eight-value IN list by building a temporary b-tree, at every insert and every change of
    // status (a sixth of the writer thread's instructions, per callgrind).
    connection.pragma_update(None, "ignore_check_constraints", "ON")?;
    connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
    Ok(journal_mode)
}

/// Brings the schema up to `version` (at most [`SCHEMA_VERSION`]; `open` asks for that, a test
/// for an older one) and returns the version the file had. A newer one is left alone.
pub(super) fn migrate(connection: &mut Connection, version: i64) -> rusqlite::Result<i64> {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    transaction.execute_batch(
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)",
    )?;
    let found: Option<String> = transaction
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |row| row.get(0),
        )
        .optional()?;
    // A version that is not a number cannot be newer than ours in any way we could honour.
    let found = match found {
        None => 0,
        Some(text) => text.parse().unwrap_or(i64::MAX),
    };
    let version = version.min(SCHEMA_VERSION);
    if found < version {
        let done = usize::try_from(found.max(0)).unwrap_or(0);
        let target = usize::try_from(version).unwrap_or(0);
        for step in &MIGRATIONS[done..target] {
            transaction.execute_batch(step)?;
        }
        transaction.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?1) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [version.to_string()],
        )?;
    }
    transaction.commit()?;
    Ok(found)
}
