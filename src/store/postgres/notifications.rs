//! The notification outbox (see `store::notification`): the jobs whose end is still to be
//! announced (`jobs.notify`), and the `notifications` table every instance delivers from.
//!
//! Announcing is idempotent (`ON CONFLICT DO NOTHING`), so two instances announcing one end keep
//! one of each notification; handing out is one `UPDATE` over rows taken `FOR UPDATE SKIP
//! LOCKED`, so two instances asking at once never get the same one. Every write is on the disk
//! pool: a notification kept, or a try's result, is not lost with the database server.

use std::collections::HashMap;
use std::time::Duration;

use tokio_postgres::Row;

use super::rows::{job_columns, job_from_row};
use super::{now_ms, Cached, PgStore};
use crate::job::{Job, JobId, Status};
use crate::store::{
    DueNotification, NewNotification, NotificationState, NotificationStatus, StoreError, Tried,
};

/// How long after a job's end any instance announces it, not just the one that ended it: the
/// one that ended it announces it at once, and has died if it has not by then.
const OTHERS_ANNOUNCE_AFTER_MS: i64 = 10_000;

/// Hands out the pending notifications due at `$1`, at most `$2`, oldest due first, held by
/// `$3` until `$4`. Rows another transaction is handing out are skipped, not waited for.
const HAND_OUT: &str = "\
    WITH taken AS ( \
        UPDATE notifications SET attempts = attempts + 1, held_by = $3, held_until_ms = $4 \
        WHERE (job, position) IN ( \
            SELECT job, position FROM notifications \
            WHERE status = 'pending' AND next_at_ms <= $1 \
              AND (held_until_ms IS NULL OR held_until_ms <= $1) \
            ORDER BY next_at_ms, created_ms, job, position LIMIT $2 \
            FOR UPDATE SKIP LOCKED) \
        RETURNING job, hook, position, target, attempts, created_ms, expires_ms, body, \
                  env::text, next_at_ms, route \
    ) \
    SELECT job, hook, position, target, attempts, created_ms, expires_ms, body, env, route \
    FROM taken ORDER BY next_at_ms, created_ms, job, position";

impl PgStore {
    /// Finished jobs still marked, oldest end first, and jobs awaiting approval whose wait is
    /// still marked, oldest first; at most `limit` of both together, by when each end or wait
    /// began. For ends, an instance looks only at the jobs it ran last (or that ran nowhere, such
    /// as a cancelled queued job) and at ends older than [`OTHERS_ANNOUNCE_AFTER_MS`]: a live
    /// instance announces the ends of its own runs, and the others do that work only for one
    /// that died. A wait ran nowhere, so every instance may announce it. Announcing twice is
    /// harmless either way.
    pub async fn unannounced(&self, limit: usize) -> Result<Vec<Job>, StoreError> {
        self.settle().await;
        let truncate_at = limit;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let others_after = now_ms().saturating_sub(OTHERS_ANNOUNCE_AFTER_MS);
        let client = self.client().await?;
        let mut rows = Cached(&client)
            .query(
                concat!(
                    "SELECT ",
                    job_columns!(),
                    " FROM jobs \
                     WHERE notify AND status NOT IN ('queued', 'running', 'awaiting_approval') \
                       AND (instance = $1 OR instance IS NULL OR finished_ms <= $2) \
                     ORDER BY finished_ms, seq LIMIT $3"
                ),
                &[&self.inner.instance, &others_after, &limit],
            )
            .await
            .map_err(|e| self.sql(e))?;
        rows.extend(
            Cached(&client)
                .query(
                    concat!(
                        "SELECT ",
                        job_columns!(),
                        " FROM jobs WHERE announce_wait ORDER BY seq LIMIT $1"
                    ),
                    &[&limit],
                )
                .await
                .map_err(|e| self.sql(e))?,
        );
        let mut jobs = rows
            .iter()
            .map(job_from_row)
            .collect::<Result<Vec<Job>, String>>()
            .map_err(|error| StoreError::Database(error.into()))?;
        // Each list is in order already; a stable sort keeps it among equal times.
        jobs.sort_by_key(|job| job.finished_ms().unwrap_or(job.created_ms));
        jobs.truncate(truncate_at);
        Ok(jobs)
    }

    /// One transaction: the notifications are inserted unless the job has them already (its
    /// hook is read from its row, so nothing is kept for a job that is gone), then the marks
    /// are cleared: only the wait's for a job given awaiting approval, both for an ended one.
    pub async fn announce(
        &self,
        job: &Job,
        notifications: Vec<NewNotification>,
    ) -> Result<(), StoreError> {
        let wait = job.status() == Status::AwaitingApproval;
        super::retrying("announcement", || {
            self.announce_once(&job.id, &notifications, wait)
        })
        .await?;
        self.committed(2, true);
        Ok(())
    }

    async fn announce_once(
        &self,
        job: &JobId,
        notifications: &[NewNotification],
        wait: bool,
    ) -> Result<(), StoreError> {
        let positions: Vec<i32> = notifications
            .iter()
            .map(|new| i32::try_from(new.position).unwrap_or(i32::MAX))
            .collect();
        let targets: Vec<&str> = notifications
            .iter()
            .map(|new| new.target.as_str())
            .collect();
        let routes: Vec<&str> = notifications.iter().map(|new| new.route.as_str()).collect();
        let created: Vec<i64> = notifications.iter().map(|new| new.created_ms).collect();
        let expires: Vec<i64> = notifications.iter().map(|new| new.expires_ms).collect();
        let bodies: Vec<&[u8]> = notifications
            .iter()
            .map(|new| new.body.as_slice())
            .collect();
        let envs: Vec<String> = notifications
            .iter()
            .map(|new| env_to_json(&new.env))
            .collect();
        let mut client = self.client().await?;
        let transaction = super::begin(&mut client, &self.inner.failure).await?;
        let sql = |error| self.sql(error);
        if !notifications.is_empty() {
            Cached(&transaction)
                .execute(
                    "INSERT INTO notifications (job, position, hook, target, status, \
                         created_ms, expires_ms, next_at_ms, body, env, route) \
                     SELECT j.id, n.position, j.hook, n.target, 'pending', n.created_ms, \
                         n.expires_ms, n.created_ms, n.body, n.env::jsonb, n.route \
                     FROM jobs j, unnest($2::int[], $3::text[], $4::bigint[], $5::bigint[], \
                                         $6::bytea[], $7::text[], $8::text[]) \
                         AS n(position, target, created_ms, expires_ms, body, env, route) \
                     WHERE j.id = $1 AND (NOT $9 OR j.announce_wait) \
                     ON CONFLICT (job, position) DO NOTHING",
                    &[
                        &job.as_str(),
                        &positions,
                        &targets,
                        &created,
                        &expires,
                        &bodies,
                        &envs,
                        &routes,
                        // A wait announced after it ended (approved, or the job ended since
                        // the announcer read it) keeps nothing: its message would be out of
                        // date.
                        &wait,
                    ],
                )
                .await
                .map_err(sql)?;
        }
        let clear = if wait {
            "UPDATE jobs SET announce_wait = false WHERE id = $1 AND announce_wait"
        } else {
            "UPDATE jobs SET notify = false, announce_wait = false \
             WHERE id = $1 AND (notify OR announce_wait)"
        };
        Cached(&transaction)
            .execute(clear, &[&job.as_str()])
            .await
            .map_err(sql)?;
        transaction.commit().await.map_err(sql)
    }

    pub async fn due_notifications(
        &self,
        now_ms: i64,
        limit: usize,
        hold: Duration,
    ) -> Result<Vec<DueNotification>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let hold_ms = i64::try_from(hold.as_millis()).unwrap_or(i64::MAX);
        let held_until = now_ms.saturating_add(hold_ms);
        let client = self.client().await?;
        let rows = Cached(&client)
            .query(
                HAND_OUT,
                &[&now_ms, &limit, &self.inner.instance, &held_until],
            )
            .await
            .map_err(|e| self.sql(e))?;
        self.committed(1, true);
        rows.iter()
            .map(due_from_row)
            .collect::<Result<Vec<_>, String>>()
            .map_err(|error| StoreError::Database(error.into()))
    }

    /// Settles or reschedules a pending notification and lets go of its hold. A delivery keeps
    /// the error of the last failed try, as the SQLite store does. A result for one already
    /// settled (a late deliverer whose hold ran out) changes nothing.
    pub async fn notification_tried(
        &self,
        job: &JobId,
        position: u32,
        tried: Tried,
    ) -> Result<(), StoreError> {
        let position = i32::try_from(position).unwrap_or(i32::MAX);
        let (status, next_at_ms, error) = match tried {
            Tried::Delivered => (NotificationStatus::Delivered, None, None),
            Tried::Retry { at_ms, error } => {
                (NotificationStatus::Pending, Some(at_ms), Some(error))
            }
            Tried::Failed { error } => (NotificationStatus::Failed, None, Some(error)),
        };
        let client = self.client().await?;
        Cached(&client)
            .execute(
                "UPDATE notifications SET status = $3, next_at_ms = coalesce($4, next_at_ms), \
                     last_error = coalesce($5, last_error), held_by = NULL, held_until_ms = NULL \
                 WHERE job = $1 AND position = $2 AND status = 'pending'",
                &[
                    &job.as_str(),
                    &position,
                    &status.as_str(),
                    &next_at_ms,
                    &error,
                ],
            )
            .await
            .map_err(|e| self.sql(e))?;
        self.committed(1, true);
        Ok(())
    }

    pub async fn notifications(
        &self,
        jobs: &[JobId],
    ) -> Result<HashMap<JobId, Vec<NotificationState>>, StoreError> {
        if jobs.is_empty() {
            return Ok(HashMap::new());
        }
        let ids: Vec<&str> = jobs.iter().map(JobId::as_str).collect();
        self.settle().await;
        let client = self.client().await?;
        let rows = Cached(&client)
            .query(
                "SELECT job, position, target, status, attempts, last_error, next_at_ms \
                 FROM notifications WHERE job = ANY($1) ORDER BY job, position",
                &[&ids],
            )
            .await
            .map_err(|e| self.sql(e))?;
        let mut found: HashMap<JobId, Vec<NotificationState>> = HashMap::new();
        for row in &rows {
            let (job, state) =
                state_from_row(row).map_err(|error| StoreError::Database(error.into()))?;
            found.entry(job).or_default().push(state);
        }
        Ok(found)
    }

    /// A held notification is due again when its hold ends, unless its try's result comes first.
    /// Two reads of one index row each (`notifications_due`, `notifications_held`), never of
    /// every pending notification: a target down for a day may have many.
    pub async fn next_notification_due(&self) -> Result<Option<i64>, StoreError> {
        let client = self.client().await?;
        let row = Cached(&client)
            .query_one(
                "SELECT least( \
                     (SELECT next_at_ms FROM notifications \
                      WHERE status = 'pending' AND held_until_ms IS NULL \
                      ORDER BY next_at_ms LIMIT 1), \
                     (SELECT held_until_ms FROM notifications \
                      WHERE status = 'pending' AND held_until_ms IS NOT NULL \
                      ORDER BY held_until_ms LIMIT 1))",
                &[],
            )
            .await
            .map_err(|e| self.sql(e))?;
        Ok(row.get(0))
    }

    /// At start-up, before this instance delivers anything: the holds its previous run left
    /// (the name is held, so that run is gone) end now, and those notifications are due again
    /// at once rather than after their hold.
    pub(super) async fn release_holds(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        let released = Cached(&client)
            .execute(
                "UPDATE notifications SET held_by = NULL, held_until_ms = NULL \
                 WHERE held_by = $1 AND status = 'pending'",
                &[&self.inner.instance],
            )
            .await
            .map_err(|e| self.sql(e))?;
        self.committed(1, true);
        if released > 0 {
            tracing::info!(
                count = released,
                "notifications a previous run of this instance was trying are due again"
            );
        }
        Ok(())
    }
}

/// `env` as the `env` column keeps it: a JSON array of `[name, value]` pairs, in order.
fn env_to_json(env: &[(String, String)]) -> String {
    serde_json::to_string(env).unwrap_or_else(|_| "[]".to_string())
}

fn env_from_json(text: &str) -> Result<Vec<(String, String)>, String> {
    serde_json::from_str(text)
        .map_err(|error| format!("a notification's `env` is unreadable: {error}"))
}

fn job_of(row: &Row) -> Result<JobId, String> {
    let id: String = row.get(0);
    JobId::parse(&id).ok_or_else(|| format!("`{id}` is not a job id"))
}

fn unsigned(value: i32) -> u32 {
    u32::try_from(value).unwrap_or(0)
}

/// A row of [`HAND_OUT`].
fn due_from_row(row: &Row) -> Result<DueNotification, String> {
    Ok(DueNotification {
        job: job_of(row)?,
        hook: row.get(1),
        position: unsigned(row.get(2)),
        target: row.get(3),
        attempts: unsigned(row.get(4)),
        created_ms: row.get(5),
        expires_ms: row.get(6),
        body: row.get(7),
        env: env_from_json(row.get(8))?,
        route: row.get(9),
    })
}

/// A row of `notifications`' read, with its job.
fn state_from_row(row: &Row) -> Result<(JobId, NotificationState), String> {
    let status: String = row.get(3);
    let status = NotificationStatus::parse(&status)
        .ok_or_else(|| format!("`{status}` is not a notification status"))?;
    let next_attempt_ms: i64 = row.get(6);
    let state = NotificationState {
        position: unsigned(row.get(1)),
        target: row.get(2),
        status,
        attempts: unsigned(row.get(4)),
        last_error: row.get(5),
        next_attempt_ms: (status == NotificationStatus::Pending).then_some(next_attempt_ms),
    };
    Ok((job_of(row)?, state))
}
