//! The PostgreSQL schema: versioned migrations applied at start, one instance at a time, and the
//! advisory-lock keys the cluster shares.

use deadpool_postgres::Pool;

use super::Failure;
use crate::store::StoreError;

/// The first key of every advisory lock hookrunner takes (`pg_advisory_*(LOCK_SPACE, n)`), so
/// its locks do not collide with another application's on the same database.
pub(super) const LOCK_SPACE: i32 = 0x686f_6f6b; // "hook"

/// Second keys under [`LOCK_SPACE`]: migrations, and claims (which serialise across the cluster).
pub(super) const MIGRATE_LOCK: i32 = 1;
pub(super) const CLAIM_LOCK: i32 = 2;

/// The first key of an instance's name lock: `pg_try_advisory_lock(NAME_SPACE, hashtext(name))`.
pub(super) const NAME_SPACE: i32 = 0x686f_6f6c; // "hool"

/// The schema this code reads and writes, kept in `hookrunner_meta` under `schema_version`: the
/// number of [`MIGRATIONS`] applied.
pub(super) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The schema, one step per version, each applied in the transaction that records the new
/// version. Steps are only ever appended.
///
/// `seq` keeps insertion order (ids are random). `placement` is NULL for a job any instance may
/// claim, else the one instance that may. `lane` is what the hook's concurrency counts: the hook,
/// or the hook and the instance for a `run_on: all` copy. The `dedupe` foreign key is deferred,
/// so an admission claims the key before it inserts the job that holds it.
const MIGRATIONS: [&str; 4] = [
    "
    CREATE TABLE jobs (
        seq              BIGSERIAL PRIMARY KEY,
        id               TEXT UNIQUE NOT NULL,
        hook             TEXT NOT NULL,
        request_id       TEXT NOT NULL,
        status           TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded',
                             'failed', 'timed_out', 'cancelled', 'superseded', 'interrupted')),
        dedupe_key       TEXT,
        created_ms       BIGINT NOT NULL,
        started_ms       BIGINT,
        finished_ms      BIGINT,
        instance         TEXT,
        placement        TEXT,
        lane             TEXT NOT NULL,
        attempt          INTEGER NOT NULL DEFAULT 1,
        attempts         INTEGER NOT NULL DEFAULT 1,
        exit_code        INTEGER,
        signal           INTEGER,
        error            TEXT,
        duration_ms      BIGINT,
        stdout           TEXT,
        stderr           TEXT,
        command          TEXT NOT NULL,
        cancel_requested BOOLEAN NOT NULL DEFAULT false
    );
    CREATE INDEX jobs_queued ON jobs (lane, seq) WHERE status = 'queued';
    CREATE INDEX jobs_running_by_lane ON jobs (lane) WHERE status = 'running';
    CREATE INDEX jobs_running_by_instance ON jobs (instance) WHERE status = 'running';
    CREATE INDEX jobs_by_hook ON jobs (hook, seq);
    CREATE INDEX jobs_by_status ON jobs (status, seq);
    CREATE TABLE lanes (
        lane           TEXT PRIMARY KEY,
        mode           TEXT NOT NULL,
        parallel_limit BIGINT
    );
    CREATE TABLE dedupe (
        hook   TEXT NOT NULL,
        key    TEXT NOT NULL,
        job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
        PRIMARY KEY (hook, key)
    );
    CREATE INDEX dedupe_by_job ON dedupe (job_id);
    CREATE TABLE job_output (
        job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        start  BIGINT NOT NULL,
        data   BYTEA NOT NULL,
        PRIMARY KEY (job_id, start)
    );
    CREATE TABLE instances (
        name         TEXT PRIMARY KEY,
        version      TEXT NOT NULL,
        started_at   TIMESTAMPTZ NOT NULL,
        heartbeat_at TIMESTAMPTZ NOT NULL,
        boot         TEXT NOT NULL
    );
",
    // Version 2: retries. `next_attempt_ms` is when a job queued for its next attempt may be
    // claimed. `log_base` is where the current attempt's output starts in the job's log: each
    // attempt's output is written from offset 0 of its own (by whichever instance runs it), and
    // the trigger places it after the attempts before.
    "
    ALTER TABLE jobs ADD COLUMN next_attempt_ms BIGINT;
    ALTER TABLE jobs ADD COLUMN log_base BIGINT NOT NULL DEFAULT 0;
    CREATE INDEX jobs_retry_due ON jobs (next_attempt_ms)
        WHERE status = 'queued' AND next_attempt_ms IS NOT NULL;
    CREATE FUNCTION hookrunner_output_after_earlier_attempts() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            NEW.start := NEW.start + (SELECT log_base FROM jobs WHERE id = NEW.job_id);
            RETURN NEW;
        END
        $$;
    CREATE TRIGGER job_output_after_earlier_attempts BEFORE INSERT ON job_output
        FOR EACH ROW EXECUTE FUNCTION hookrunner_output_after_earlier_attempts();
",
    // Version 3: notifications (`store::notification`). `notify` marks a job whose end is still
    // to be announced; only finished jobs still marked are in `jobs_unannounced`, so a job whose
    // hook does not notify costs no index entry. A notification is named by its job and its
    // place in the hook's `notify` list, and has no foreign key to `jobs`: a pending one outlives
    // its pruned job. `next_at_ms` is when its next try is due; `held_by` is the instance trying
    // it now, until `held_until_ms`. `env` is a JSON array of `[name, value]` pairs.
    "
    ALTER TABLE jobs ADD COLUMN notify BOOLEAN NOT NULL DEFAULT false;
    CREATE INDEX jobs_unannounced ON jobs (finished_ms)
        WHERE notify AND status NOT IN ('queued', 'running');
    CREATE TABLE notifications (
        job           TEXT NOT NULL,
        position      INTEGER NOT NULL,
        hook          TEXT NOT NULL,
        target        TEXT NOT NULL,
        route         TEXT NOT NULL,
        status        TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
        attempts      INTEGER NOT NULL DEFAULT 0,
        created_ms    BIGINT NOT NULL,
        expires_ms    BIGINT NOT NULL,
        next_at_ms    BIGINT NOT NULL,
        held_by       TEXT,
        held_until_ms BIGINT,
        last_error    TEXT,
        body          BYTEA NOT NULL,
        env           JSONB NOT NULL,
        PRIMARY KEY (job, position)
    );
    CREATE INDEX notifications_due ON notifications (next_at_ms) WHERE status = 'pending';
    CREATE INDEX notifications_held ON notifications (held_until_ms)
        WHERE status = 'pending' AND held_until_ms IS NOT NULL;
",
    // Version 4: approvals (SPEC §15). Three statuses join the `status` check.
    // `approval_until_ms` is when a job awaiting approval expires; `jobs_awaiting` holds only
    // those jobs, by it, so expiring them, finding the next to expire and counting them among
    // the pending stay cheap. `announce_wait` marks a wait still to be announced, and only
    // marked jobs are in `jobs_wait_unannounced`. A job awaiting approval with `notify` is not an
    // end to announce, so it leaves `jobs_unannounced`.
    "
    ALTER TABLE jobs DROP CONSTRAINT jobs_status_check;
    ALTER TABLE jobs ADD CONSTRAINT jobs_status_check CHECK (status IN ('queued', 'running',
        'succeeded', 'failed', 'timed_out', 'cancelled', 'superseded', 'interrupted',
        'awaiting_approval', 'rejected', 'expired'));
    ALTER TABLE jobs ADD COLUMN approval_until_ms BIGINT;
    ALTER TABLE jobs ADD COLUMN announce_wait BOOLEAN NOT NULL DEFAULT false;
    CREATE INDEX jobs_awaiting ON jobs (approval_until_ms) WHERE status = 'awaiting_approval';
    CREATE INDEX jobs_wait_unannounced ON jobs (seq) WHERE announce_wait;
    DROP INDEX jobs_unannounced;
    CREATE INDEX jobs_unannounced ON jobs (finished_ms)
        WHERE notify AND status NOT IN ('queued', 'running', 'awaiting_approval');
",
];

/// Brings the schema up to [`SCHEMA_VERSION`] under the migration lock, so instances starting
/// together migrate one at a time; refuses a database a newer hookrunner made.
pub(super) async fn migrate(pool: &Pool, failure: &Failure) -> Result<(), StoreError> {
    let mut client = pool.get().await.map_err(|error| failure.pool(error))?;
    let transaction = super::begin(&mut client, failure).await?;
    transaction
        .execute(
            "SELECT pg_advisory_xact_lock($1, $2)",
            &[&LOCK_SPACE, &MIGRATE_LOCK],
        )
        .await
        .map_err(|e| failure.sql(e))?;
    // Looked up first: `CREATE TABLE IF NOT EXISTS` would log a notice at every start.
    let exists: bool = transaction
        .query_one("SELECT to_regclass('hookrunner_meta') IS NOT NULL", &[])
        .await
        .map_err(|e| failure.sql(e))?
        .get(0);
    if !exists {
        transaction
            .batch_execute(
                "CREATE TABLE hookrunner_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            )
            .await
            .map_err(|e| failure.sql(e))?;
    }
    let found = transaction
        .query_opt(
            "SELECT value FROM hookrunner_meta WHERE key = 'schema_version'",
            &[],
        )
        .await
        .map_err(|e| failure.sql(e))?
        .map(|row| row.get::<_, String>(0));
    // A version that is not a number cannot be newer than ours in any way we could honour.
    let found = match found {
        None => 0,
        Some(text) => text.parse().unwrap_or(i64::MAX),
    };
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            found,
            known: SCHEMA_VERSION,
        });
    }
    if found < SCHEMA_VERSION {
        let done = usize::try_from(found.max(0)).unwrap_or(0);
        for step in &MIGRATIONS[done..] {
            transaction
                .batch_execute(step)
                .await
                .map_err(|e| failure.sql(e))?;
        }
        transaction
            .execute(
                "INSERT INTO hookrunner_meta (key, value) VALUES ('schema_version', $1) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&SCHEMA_VERSION.to_string()],
            )
            .await
            .map_err(|e| failure.sql(e))?;
    }
    transaction.commit().await.map_err(|e| failure.sql(e))
}
