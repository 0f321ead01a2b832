//! A job's next attempt (SPEC §12), in a transaction of its own: the job goes back to `queued`
//! with its attempt, its `next_attempt_ms` and a new place at the end of its lane, fenced like an
//! end (only while it runs on this instance). Also the jobs a dead instance left running whose
//! hook retries `interrupted`.
//!
//! Output first: the attempt's output goes through the outbox, and the next attempt's output
//! is placed after it (`log_base`, read when the retry commits), by whichever instance runs it.
//! So the outbox writes all of this attempt's output before the retry's transaction begins.

use deadpool_postgres::Transaction;

use super::rows::Ending;
use super::Cached;
use super::{lock, now_ms, PgStore};
use crate::command::JobCommand;
use crate::job::{Job, Outcome, Status};
use crate::store::{Durability, Retried, StoreError};

/// Queues a job for its next attempt (when it is still `running` on `instance`): a new place at
/// the end of the line (`seq`), and its next attempt's output placed after what is kept.
const REQUEUE: &str = "UPDATE jobs SET status = 'queued', attempt = $3, next_attempt_ms = $4, \
     started_ms = NULL, instance = NULL, \
     seq = nextval(pg_get_serial_sequence('jobs', 'seq')), \
     log_base = coalesce((SELECT max(start + length(data)) FROM job_output \
                          WHERE job_id = $1), 0) \
     WHERE id = $1 AND status = 'running' AND instance = $2";

impl PgStore {
    pub async fn retry(&self, job: &Job, _command: &JobCommand) -> Result<Retried, StoreError> {
        let Some(due_ms) = job
            .next_attempt_ms
            .filter(|_| job.status() == Status::Queued)
        else {
            return Err(StoreError::NotRetrying(job.id.clone()));
        };
        // Handing the outbox the job, not ended, writes what is left of its output and forgets
        // its buffer (the next attempt's output starts at 0 again), and records nothing else.
        self.inner.outbox.finish(job, Durability::Os).await?;
        let retried = super::retrying("retry", || self.retry_once(job, due_ms)).await?;
        lock(&self.inner.running).remove(&job.id);
        Ok(retried)
    }

    async fn retry_once(&self, job: &Job, due_ms: i64) -> Result<Retried, StoreError> {
        let mut client = self.client().await?;
        let transaction = super::begin(&mut client, &self.inner.failure).await?;
        let sql = |error| self.sql(error);
        let id = job.id.as_str();
        let me = &self.inner.instance;
        let held = Cached(&transaction)
            .query_opt(
                "SELECT lane FROM jobs WHERE id = $1 AND status = 'running' AND instance = $2",
                &[&id, me],
            )
            .await
            .map_err(sql)?;
        let Some(held) = held else {
            return Ok(Retried::NotHeld);
        };
        let lane: String = held.get(0);
        // Locked like an admission that supersedes: a trigger admitted meanwhile either is seen
        // waiting here, or sees the retry waiting and supersedes it.
        let mode: Option<String> = Cached(&transaction)
            .query_opt(
                "SELECT mode FROM lanes WHERE lane = $1 FOR UPDATE",
                &[&lane],
            )
            .await
            .map_err(sql)?
            .map(|row| row.get(0));
        if matches!(mode.as_deref(), Some("latest" | "replace")) {
            let newer: bool = Cached(&transaction)
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM jobs WHERE lane = $1 AND status = 'queued')",
                    &[&lane],
                )
                .await
                .map_err(sql)?
                .get(0);
            if newer {
                return self.superseded(transaction, job).await;
            }
        }
        let attempt = i32::try_from(job.attempt).unwrap_or(i32::MAX);
        let requeued = Cached(&transaction)
            .execute(REQUEUE, &[&id, me, &attempt, &due_ms])
            .await
            .map_err(sql)?;
        if requeued == 0 {
            return Ok(Retried::NotHeld);
        }
        // The others look again, and learn when it is due.
        Cached(&transaction)
            .execute("SELECT pg_notify('hookrunner_work', '')", &[])
            .await
            .map_err(sql)?;
        transaction.commit().await.map_err(sql)?;
        self.committed(2, true);
        Ok(Retried::Queued {
            committed: crate::store::Committed::done(),
        })
    }

    /// A newer job of the lane waits: the retry ends `superseded` instead of waiting.
    async fn superseded(
        &self,
        transaction: Transaction<'_>,
        job: &Job,
    ) -> Result<Retried, StoreError> {
        let sql = |error| self.sql(error);
        let mut ended = job.clone();
        ended
            .finish(Outcome::unrun(Status::Superseded, None), now_ms())
            .map_err(|error| StoreError::Database(error.to_string().into()))?;
        let Some(ending) = Ending::of(&ended) else {
            return Ok(Retried::NotHeld);
        };
        let updated = Cached(&transaction)
            .execute(
                "UPDATE jobs SET status = $3, finished_ms = $4, started_ms = NULL, \
                 instance = NULL, next_attempt_ms = NULL \
                 WHERE id = $1 AND status = 'running' AND instance = $2",
                &[
                    &job.id.as_str(),
                    &self.inner.instance,
                    &ending.status,
                    &ending.finished_ms,
                ],
            )
            .await
            .map_err(sql)?;
        if updated == 0 {
            return Ok(Retried::NotHeld);
        }
        super::ended_unsucceeded(&transaction, &[job.id.to_string()])
            .await
            .map_err(sql)?;
        transaction.commit().await.map_err(sql)?;
        self.committed(2, true);
        Ok(Retried::Superseded(Box::new(ended)))
    }

    /// The jobs `instance` left running whose hook retries `interrupted` and that have an
    /// attempt left are queued for it, in `transaction`, before the rest are interrupted.
    pub(super) async fn retry_interrupted(
        &self,
        transaction: &Transaction<'_>,
        instance: &str,
    ) -> Result<usize, StoreError> {
        let sql = |error| self.sql(error);
        let running = Cached(transaction)
            .query(
                "SELECT id, attempt, command FROM jobs WHERE status = 'running' AND instance = $1",
                &[&instance],
            )
            .await
            .map_err(sql)?;
        let mut retried = 0;
        for row in &running {
            let id: &str = row.get(0);
            let attempt = u32::try_from(row.get::<_, i32>(1)).unwrap_or(u32::MAX);
            let Ok(Some(command)) = JobCommand::from_stored(row.get(2)) else {
                continue;
            };
            let Some(plan) = &command.retry else {
                continue;
            };
            let Some(delay) =
                plan.next_delay(Status::Interrupted, attempt, &mut rand::thread_rng())
            else {
                continue;
            };
            let due_ms = now_ms().saturating_add(delay.as_millis() as i64);
            let next = i32::try_from(attempt.saturating_add(1)).unwrap_or(i32::MAX);
            retried += Cached(transaction)
                .execute(REQUEUE, &[&id, &instance, &next, &due_ms])
                .await
                .map_err(sql)?;
        }
        Ok(usize::try_from(retried).unwrap_or(usize::MAX))
    }
}
