//! The statements the writer runs on the `jobs` and `meta` tables, and how a row becomes a
//! [`JobRecord`]. Every statement is prepared once and cached by the connection.

use rusqlite::types::Type;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row, ToSql};

use super::{JobRecord, JobUpdate};
use crate::job::{JobId, Status};

/// The error a job that was running when the server stopped is given.
pub(super) const INTERRUPTED_ERROR: &str = "the server stopped while the command ran";

/// The columns [`record_from_row`] reads, in its order; a macro so statements stay `const`.
macro_rules! job_columns {
    () => {
        "id, hook, request_id, status, dedupe_key, created_ms, started_ms, finished_ms, \
         exit_code, signal, error, duration_ms, command, stdout, stderr, instance, attempt, \
         attempts, next_attempt_ms"
    };
}

pub(super) fn insert(connection: &Connection, record: &JobRecord) -> rusqlite::Result<()> {
    let mut statement = connection.prepare_cached(concat!(
        "INSERT INTO jobs (",
        job_columns!(),
        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"
    ))?;
    statement.execute(params![
        record.id.as_str(),
        record.hook,
        record.request_id,
        record.status.as_str(),
        record.dedupe_key,
        record.created_ms,
        record.started_ms,
        record.finished_ms,
        record.exit_code,
        record.signal,
        record.error,
        record.duration_ms,
        record.command,
        record.stdout,
        record.stderr,
        record.instance,
        record.attempt,
        record.attempts,
        record.next_attempt_ms,
    ])?;
    Ok(())
}

/// Applies `update` to the job; `false` if there is no such job.
pub(super) fn update(
    connection: &Connection,
    id: &JobId,
    update: &JobUpdate,
) -> rusqlite::Result<bool> {
    let changed = match update {
        JobUpdate::Started { at_ms, instance } => connection
            .prepare_cached(
                "UPDATE jobs SET status = ?2, started_ms = ?3, instance = ?4, next_attempt_ms = NULL \
                 WHERE id = ?1",
            )?
            .execute(params![
                id.as_str(),
                Status::Running.as_str(),
                at_ms,
                instance
            ])?,
        JobUpdate::Retried {
            attempt,
            next_attempt_ms,
        } => connection
            .prepare_cached(
                "UPDATE jobs SET status = ?2, attempt = ?3, next_attempt_ms = ?4, \
                 started_ms = NULL, instance = NULL WHERE id = ?1",
            )?
            .execute(params![
                id.as_str(),
                Status::Queued.as_str(),
                attempt,
                next_attempt_ms
            ])?,
        JobUpdate::Finished {
            status,
            at_ms,
            exit_code,
            signal,
            error,
            duration_ms,
            stdout,
            stderr,
        } => connection
            .prepare_cached(
                "UPDATE jobs SET status = ?2, finished_ms = ?3, exit_code = ?4, signal = ?5, \
                 error = ?6, duration_ms = ?7, stdout = ?8, stderr = ?9 WHERE id = ?1",
            )?
            .execute(params![
                id.as_str(),
                status.as_str(),
                at_ms,
                exit_code,
                signal,
                error,
                duration_ms,
                stdout,
                stderr,
            ])?,
    };
    Ok(changed > 0)
}

/// A write that changes nothing but still takes the write lock and commits.
pub(super) fn touch_meta(connection: &Connection) -> rusqlite::Result<()> {
    connection
        .prepare_cached("UPDATE meta SET value = value WHERE key = 'schema_version'")?
        .execute([])?;
    Ok(())
}

/// Marks every running job interrupted at `now_ms` and returns the queued jobs, oldest first.
pub(super) fn recover(connection: &Connection, now_ms: i64) -> rusqlite::Result<Vec<JobRecord>> {
    connection
        .prepare_cached(
            "UPDATE jobs SET status = ?1, finished_ms = ?2, error = ?3, \
             duration_ms = CASE WHEN started_ms IS NULL THEN NULL \
                                ELSE max(?2 - started_ms, 0) END \
             WHERE status = ?4",
        )?
        .execute(params![
            Status::Interrupted.as_str(),
            now_ms,
            INTERRUPTED_ERROR,
            Status::Running.as_str(),
        ])?;
    let mut statement = connection.prepare_cached(concat!(
        "SELECT ",
        job_columns!(),
        " FROM jobs WHERE status = ?1 ORDER BY seq"
    ))?;
    let queued = statement.query_map([Status::Queued.as_str()], record_from_row)?;
    queued.collect()
}

/// Deletes the finished jobs created before `created_before_ms` or not among the newest
/// `max_jobs` jobs, and returns their ids.
pub(super) fn prune(
    connection: &Connection,
    created_before_ms: i64,
    max_jobs: usize,
) -> rusqlite::Result<Vec<JobId>> {
    // The sub-select finds the seq of the last job to keep; with fewer jobs it is NULL, which
    // matches nothing.
    let mut statement = connection.prepare_cached(
        "DELETE FROM jobs \
         WHERE status NOT IN (?1, ?2) \
           AND (created_ms < ?3 \
                OR seq <= (SELECT seq FROM jobs ORDER BY seq DESC LIMIT 1 OFFSET ?4)) \
         RETURNING id",
    )?;
    let deleted = statement.query_map(
        params![
            Status::Queued.as_str(),
            Status::Running.as_str(),
            created_before_ms,
            i64::try_from(max_jobs).unwrap_or(i64::MAX),
        ],
        |row| job_id_at(row, 0),
    )?;
    deleted.collect()
}

pub(super) fn get(connection: &Connection, id: &JobId) -> rusqlite::Result<Option<JobRecord>> {
    connection
        .prepare_cached(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE id = ?1"
        ))?
        .query_row([id.as_str()], record_from_row)
        .optional()
}

/// Newest first: the jobs matching `hook` and `status`, created before `before` (none if that job
/// is not kept), at most `limit`.
pub(super) fn list(
    connection: &Connection,
    hook: Option<&str>,
    status: Option<Status>,
    before: Option<&JobId>,
    limit: usize,
) -> rusqlite::Result<Vec<JobRecord>> {
    // One statement per combination of filters (each cached), so each can use its index.
    let mut sql = String::from(concat!("SELECT ", job_columns!(), " FROM jobs WHERE 1"));
    let status = status.map(Status::as_str);
    let before = before.map(JobId::as_str);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut values: Vec<&dyn ToSql> = Vec::with_capacity(4);
    if let Some(hook) = &hook {
        sql.push_str(" AND hook = ?");
        values.push(hook);
    }
    if let Some(status) = &status {
        sql.push_str(" AND status = ?");
        values.push(status);
    }
    if let Some(before) = &before {
        sql.push_str(" AND seq < (SELECT seq FROM jobs WHERE id = ?)");
        values.push(before);
    }
    sql.push_str(" ORDER BY seq DESC LIMIT ?");
    values.push(&limit);
    let mut statement = connection.prepare_cached(&sql)?;
    let records = statement.query_map(params_from_iter(values), record_from_row)?;
    records.collect()
}

pub(super) fn succeeded_keys(
    connection: &Connection,
) -> rusqlite::Result<Vec<(String, String, JobId)>> {
    let mut statement = connection.prepare_cached(
        "SELECT hook, dedupe_key, id FROM jobs \
         WHERE status = ?1 AND dedupe_key IS NOT NULL ORDER BY seq",
    )?;
    let keys = statement.query_map([Status::Succeeded.as_str()], |row| {
        Ok((row.get(0)?, row.get(1)?, job_id_at(row, 2)?))
    })?;
    keys.collect()
}

/// Reads a row selected with `job_columns!()`.
fn record_from_row(row: &Row<'_>) -> rusqlite::Result<JobRecord> {
    Ok(JobRecord {
        id: job_id_at(row, 0)?,
        hook: row.get(1)?,
        request_id: row.get(2)?,
        status: status_at(row, 3)?,
        dedupe_key: row.get(4)?,
        created_ms: row.get(5)?,
        started_ms: row.get(6)?,
        finished_ms: row.get(7)?,
        exit_code: row.get(8)?,
        signal: row.get(9)?,
        error: row.get(10)?,
        duration_ms: row.get(11)?,
        command: row.get(12)?,
        stdout: row.get(13)?,
        stderr: row.get(14)?,
        instance: row.get(15)?,
        attempt: row.get(16)?,
        attempts: row.get(17)?,
        next_attempt_ms: row.get(18)?,
    })
}

fn job_id_at(row: &Row<'_>, index: usize) -> rusqlite::Result<JobId> {
    let text: String = row.get(index)?;
    JobId::parse(&text).ok_or_else(|| corrupt(index, format!("`{text}` is not a job id")))
}

fn status_at(row: &Row<'_>, index: usize) -> rusqlite::Result<Status> {
    let text: String = row.get(index)?;
    Status::parse(&text).ok_or_else(|| corrupt(index, format!("`{text}` is not a job status")))
}

fn corrupt(index: usize, message: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(index, Type::Text, message.into())
}
