//! The statements the writer runs on the `jobs`, `notifications` and `meta` tables, and how a
//! row becomes a [`JobRecord`] or a notification. Every statement is prepared once and cached by
//! the connection.

use rusqlite::types::Type;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row, ToSql};

use super::{JobRecord, JobUpdate};
use crate::job::{JobId, Status};
use crate::store::{
    DueNotification, NewNotification, NotificationState, NotificationStatus, Tried,
};

/// The error a job that was running when the server stopped is given.
pub(super) const INTERRUPTED_ERROR: &str = "the server stopped while the command ran";

/// The columns [`record_from_row`] reads, in its order; a macro so statements stay `const`.
macro_rules! job_columns {
    () => {
        "id, hook, request_id, status, dedupe_key, created_ms, started_ms, finished_ms, \
         exit_code, signal, error, duration_ms, command, stdout, stderr, instance, attempt, \
         attempts, next_attempt_ms, notify, approval_until_ms, announce_wait"
    };
}

pub(super) fn insert(connection: &Connection, record: &JobRecord) -> rusqlite::Result<()> {
    let mut statement = connection.prepare_cached(concat!(
        "INSERT INTO jobs (",
        job_columns!(),
        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22)"
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
        record.notify,
        record.approval_until_ms,
        record.announce_wait,
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
        // At the end of the line (`seq`, which `recover` queues by), as a trigger at this moment
        // would be; the sequence is moved along so that no later insert takes the same `seq`.
        JobUpdate::Approved => {
            let changed = connection
                .prepare_cached(
                    "UPDATE jobs SET status = ?2, announce_wait = 0, \
                         seq = 1 + max((SELECT max(seq) FROM jobs), \
                                       coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'jobs'), 0)) \
                     WHERE id = ?1",
                )?
                .execute(params![id.as_str(), Status::Queued.as_str()])?;
            connection
                .prepare_cached(
                    "UPDATE sqlite_sequence SET seq = (SELECT max(seq) FROM jobs) WHERE name = 'jobs'",
                )?
                .execute([])?;
            changed
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
        } => connection
            .prepare_cached(
                "UPDATE jobs SET status = ?2, finished_ms = ?3, exit_code = ?4, signal = ?5, \
                 error = ?6, duration_ms = ?7, stdout = ?8, stderr = ?9, announce_wait = 0 \
                 WHERE id = ?1",
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

/// Runs `statements` as one write inside the batch's transaction: if one fails, a savepoint undoes
/// the others, and the rest of the batch goes on as for any write that fails on its own.
pub(super) fn as_one<T>(
    connection: &Connection,
    statements: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    connection
        .prepare_cached("SAVEPOINT one_write")?
        .execute([])?;
    let result = statements(connection);
    if connection.is_autocommit() {
        // SQLite ended the whole transaction (and the savepoint with it): the batch fails.
        return result;
    }
    let end = match result {
        Ok(_) => "RELEASE one_write",
        Err(_) => "ROLLBACK TO one_write",
    };
    let ended = connection
        .prepare_cached(end)
        .and_then(|mut statement| statement.execute([]));
    let released = ended.and_then(|_| {
        if result.is_err() {
            connection
                .prepare_cached("RELEASE one_write")?
                .execute([])?;
        }
        Ok(())
    });
    if let Err(error) = released {
        // Half of the write could be committed with the batch: end the transaction instead, so
        // the whole batch fails and every waiter hears it.
        tracing::error!(%error, "the job store could not end a savepoint; rolling back its batch");
        if let Err(error) = connection.execute_batch("ROLLBACK") {
            tracing::error!(%error, "the job store could not roll back a batch");
        }
        return Err(error);
    }
    result
}

/// Marks every running job interrupted at `now_ms`, lets go of every notification held for a
/// try (the process that held them is gone), and returns the queued jobs and those awaiting
/// approval (which wait on), oldest first.
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
    connection
        .prepare_cached(
            "UPDATE notifications SET held_until_ms = NULL WHERE held_until_ms IS NOT NULL",
        )?
        .execute([])?;
    let mut statement = connection.prepare_cached(concat!(
        "SELECT ",
        job_columns!(),
        " FROM jobs WHERE status IN (?1, ?2) ORDER BY seq"
    ))?;
    let queued = statement.query_map(
        [Status::Queued.as_str(), Status::AwaitingApproval.as_str()],
        record_from_row,
    )?;
    queued.collect()
}

/// Deletes the finished jobs (whose end is announced, if it is to be; never one awaiting
/// approval) created before `created_before_ms` or not among the newest `max_jobs` jobs, and
/// returns their ids; then the delivered and failed notifications whose job
/// is gone, now or at an earlier prune (a pending one stays until it is settled).
pub(super) fn prune(
    connection: &Connection,
    created_before_ms: i64,
    max_jobs: usize,
) -> rusqlite::Result<Vec<JobId>> {
    // The sub-select finds the seq of the last job to keep; with fewer jobs it is NULL, which
    // matches nothing.
    let mut statement = connection.prepare_cached(
        "DELETE FROM jobs \
         WHERE status NOT IN (?1, ?2, ?5) AND notify = 0 \
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
            Status::AwaitingApproval.as_str(),
        ],
        |row| job_id_at(row, 0),
    )?;
    let deleted = deleted.collect::<rusqlite::Result<Vec<JobId>>>()?;
    connection
        .prepare_cached(
            "DELETE FROM notifications \
             WHERE status <> ?1 AND NOT EXISTS (SELECT 1 FROM jobs WHERE id = notifications.job)",
        )?
        .execute([NotificationStatus::Pending.as_str()])?;
    Ok(deleted)
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
        notify: row.get(19)?,
        approval_until_ms: row.get(20)?,
        announce_wait: row.get(21)?,
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

/// The ended jobs whose end is still to be announced, oldest end first. The condition is
/// written as in `jobs_to_announce`'s definition (literals, not parameters), so the planner
/// reads only that index's jobs.
pub(super) const UNANNOUNCED: &str = concat!(
    "SELECT ",
    job_columns!(),
    " FROM jobs WHERE notify = 1 AND status NOT IN ('queued', 'running', 'awaiting_approval') \
     ORDER BY finished_ms, id LIMIT ?1"
);

/// The jobs awaiting approval whose wait is still to be announced, oldest first, through
/// `jobs_wait_to_announce` (the mark is cleared when the wait ends).
pub(super) const UNANNOUNCED_WAITS: &str = concat!(
    "SELECT ",
    job_columns!(),
    " FROM jobs WHERE announce_wait = 1 ORDER BY seq LIMIT ?1"
);

/// The pending notifications due at `?1`, oldest due first, at most `?2`. The due time and
/// `status = 'pending'` are written as in `notifications_due`'s definition, for the same reason.
pub(super) const DUE: &str = "SELECT rowid, job, hook, position, target, attempts, created_ms, \
     expires_ms, body, env, route FROM notifications \
     WHERE status = 'pending' AND coalesce(held_until_ms, next_at_ms) <= ?1 \
     ORDER BY coalesce(held_until_ms, next_at_ms), job, position LIMIT ?2";

/// When the first pending notification is due, held ones at their hold's end.
pub(super) const NEXT_DUE: &str = "SELECT min(coalesce(held_until_ms, next_at_ms)) \
     FROM notifications WHERE status = 'pending'";

/// The jobs with an end or a wait still to be announced, at most `limit`, oldest first (an end
/// by when it came, a wait by when it began).
pub(super) fn unannounced(
    connection: &Connection,
    limit: usize,
) -> rusqlite::Result<Vec<JobRecord>> {
    let limit_value = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut records = Vec::new();
    for sql in [UNANNOUNCED, UNANNOUNCED_WAITS] {
        let mut statement = connection.prepare_cached(sql)?;
        let found = statement.query_map([limit_value], record_from_row)?;
        records.extend(found.collect::<rusqlite::Result<Vec<_>>>()?);
    }
    // Both lists are sorted already; a stable sort keeps each one's order among equal times.
    records.sort_by_key(|record| record.finished_ms.unwrap_or(record.created_ms));
    records.truncate(limit);
    Ok(records)
}

/// Keeps `notifications` for the job's end (or, with `wait`, its wait for approval), pending and
/// due at their `created_ms`, except those whose position it already has, and clears its
/// `notify` and `announce_wait` marks (with `wait`, only the latter); `false` if there is no
/// such job. Run in [`as_one`].
pub(super) fn announce(
    connection: &Connection,
    job: &JobId,
    notifications: &[NewNotification],
    wait: bool,
) -> rusqlite::Result<bool> {
    // `WHERE` before `ON CONFLICT` also tells SQLite's parser the upsert from a join's `ON`.
    let mut insert = connection.prepare_cached(
        "INSERT INTO notifications (job, position, hook, target, status, attempts, created_ms, \
             expires_ms, next_at_ms, body, env, route) \
         SELECT id, ?2, hook, ?3, ?4, 0, ?5, ?6, ?5, ?7, ?8, ?9 FROM jobs \
         WHERE id = ?1 AND (?10 = 0 OR announce_wait = 1) \
         ON CONFLICT (job, position) DO NOTHING",
    )?;
    for notification in notifications {
        let env = serde_json::to_string(&notification.env)
            .map_err(|error| rusqlite::Error::ToSqlConversionFailure(Box::new(error)))?;
        insert.execute(params![
            job.as_str(),
            notification.position,
            notification.target,
            NotificationStatus::Pending.as_str(),
            notification.created_ms,
            notification.expires_ms,
            notification.body,
            env,
            notification.route,
            // A wait announced after it ended (approved, or the job ended since the
            // announcer read it) keeps nothing: its message would be out of date.
            wait,
        ])?;
    }
    let clear = if wait {
        "UPDATE jobs SET announce_wait = 0 WHERE id = ?1"
    } else {
        "UPDATE jobs SET notify = 0, announce_wait = 0 WHERE id = ?1"
    };
    let marked = connection.prepare_cached(clear)?.execute([job.as_str()])?;
    Ok(marked > 0)
}

/// Hands out the pending notifications due at `now_ms`, oldest due first, at most `limit`: each
/// one's `attempts` counts this try, and it is held until `held_until_ms`. Run in [`as_one`].
pub(super) fn take_due(
    connection: &Connection,
    now_ms: i64,
    limit: usize,
    held_until_ms: i64,
) -> rusqlite::Result<Vec<DueNotification>> {
    let mut select = connection.prepare_cached(DUE)?;
    let picked = select.query_map(
        params![now_ms, i64::try_from(limit).unwrap_or(i64::MAX)],
        |row| {
            let rowid: i64 = row.get(0)?;
            let due = DueNotification {
                job: job_id_at(row, 1)?,
                hook: row.get(2)?,
                position: row.get(3)?,
                target: row.get(4)?,
                attempts: row.get::<_, u32>(5)?.saturating_add(1),
                created_ms: row.get(6)?,
                expires_ms: row.get(7)?,
                body: row.get(8)?,
                env: env_at(row, 9)?,
                route: row.get(10)?,
            };
            Ok((rowid, due))
        },
    )?;
    let picked = picked.collect::<rusqlite::Result<Vec<_>>>()?;
    let mut hold = connection.prepare_cached(
        "UPDATE notifications SET attempts = attempts + 1, held_until_ms = ?2 WHERE rowid = ?1",
    )?;
    let mut due = Vec::with_capacity(picked.len());
    for (rowid, notification) in picked {
        hold.execute(params![rowid, held_until_ms])?;
        due.push(notification);
    }
    Ok(due)
}

/// Keeps what became of a try of a pending notification and lets go of it. A notification that
/// is no longer pending (settled by a deliverer whose hold had ended) is left as it is.
pub(super) fn notification_tried(
    connection: &Connection,
    job: &JobId,
    position: u32,
    tried: &Tried,
) -> rusqlite::Result<()> {
    let pending = NotificationStatus::Pending.as_str();
    match tried {
        Tried::Delivered => connection
            .prepare_cached(
                "UPDATE notifications SET status = ?3, next_at_ms = NULL, held_until_ms = NULL \
                 WHERE job = ?1 AND position = ?2 AND status = ?4",
            )?
            .execute(params![
                job.as_str(),
                position,
                NotificationStatus::Delivered.as_str(),
                pending,
            ])?,
        Tried::Retry { at_ms, error } => connection
            .prepare_cached(
                "UPDATE notifications SET next_at_ms = ?3, last_error = ?4, held_until_ms = NULL \
                 WHERE job = ?1 AND position = ?2 AND status = ?5",
            )?
            .execute(params![job.as_str(), position, at_ms, error, pending])?,
        Tried::Failed { error } => connection
            .prepare_cached(
                "UPDATE notifications SET status = ?3, last_error = ?4, next_at_ms = NULL, \
                 held_until_ms = NULL WHERE job = ?1 AND position = ?2 AND status = ?5",
            )?
            .execute(params![
                job.as_str(),
                position,
                NotificationStatus::Failed.as_str(),
                error,
                pending,
            ])?,
    };
    Ok(())
}

/// The notifications of each of `jobs` that has any, by position.
pub(super) fn notifications(
    connection: &Connection,
    jobs: &[JobId],
) -> rusqlite::Result<Vec<(JobId, Vec<NotificationState>)>> {
    let mut statement = connection.prepare_cached(
        "SELECT position, target, status, attempts, last_error, next_at_ms FROM notifications \
         WHERE job = ?1 ORDER BY position",
    )?;
    let mut found = Vec::new();
    for job in jobs {
        let states = statement
            .query_map([job.as_str()], |row| {
                Ok(NotificationState {
                    position: row.get(0)?,
                    target: row.get(1)?,
                    status: notification_status_at(row, 2)?,
                    attempts: row.get(3)?,
                    last_error: row.get(4)?,
                    next_attempt_ms: row.get(5)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        if !states.is_empty() {
            found.push((job.clone(), states));
        }
    }
    Ok(found)
}

pub(super) fn next_notification_due(connection: &Connection) -> rusqlite::Result<Option<i64>> {
    connection
        .prepare_cached(NEXT_DUE)?
        .query_row([], |row| row.get(0))
}

fn notification_status_at(row: &Row<'_>, index: usize) -> rusqlite::Result<NotificationStatus> {
    let text: String = row.get(index)?;
    NotificationStatus::parse(&text)
        .ok_or_else(|| corrupt(index, format!("`{text}` is not a notification status")))
}

/// A command's environment, kept as a JSON list of `[name, value]` pairs.
fn env_at(row: &Row<'_>, index: usize) -> rusqlite::Result<Vec<(String, String)>> {
    let text: String = row.get(index)?;
    // Not the parser's message: it may quote a value, which may be a secret.
    serde_json::from_str(&text).map_err(|_| {
        corrupt(
            index,
            "a notification's env is not a list of pairs".to_string(),
        )
    })
}
