//! Approvals (SPEC §15): a job awaiting approval (`status = 'awaiting_approval'`) is outside its
//! lane until `approve` puts it there, in one transaction with the lane code an admission uses
//! (`admit::enter_lane`); `reject` and `expire_approvals` end it. Each is one transaction whose
//! `UPDATE … WHERE status = 'awaiting_approval'` decides: of two instances deciding one job at
//! once, the second finds it no longer awaiting, so each job is approved, rejected or expired
//! once, and reported by one caller.

use deadpool_postgres::Transaction;
use tokio_postgres::types::ToSql;

use super::rows::{job_columns, job_from_row};
use super::{lock, now_ms, Cached, PgStore};
use crate::config::Concurrency;
use crate::job::{Job, JobId};
use crate::store::{Approval, Decided, Expiry, StoreError};

impl PgStore {
    pub async fn approve(
        &self,
        id: &JobId,
        concurrency: Concurrency,
    ) -> Result<Approval, StoreError> {
        self.settle().await;
        let approval = super::retrying("approval", || self.approve_once(id, concurrency)).await?;
        if let Approval::Approved { superseded, .. } = &approval {
            let mut commands = lock(&self.inner.commands);
            for id in superseded {
                commands.remove(id);
            }
            // Queued: this instance's next look asks the database.
            self.inner
                .work_hint
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(approval)
    }

    /// One try of the approval's transaction: the job's row is locked first (so a concurrent
    /// reject, expiry or approval waits, then finds it decided), then its lane decides as for an
    /// admission; a full queue rolls everything back.
    async fn approve_once(
        &self,
        id: &JobId,
        concurrency: Concurrency,
    ) -> Result<Approval, StoreError> {
        let sql = |error| self.sql(error);
        let mut client = self.client().await?;
        let transaction = super::begin(&mut client, &self.inner.failure).await?;
        let found = Cached(&transaction)
            .query_opt(
                concat!(
                    "SELECT ",
                    job_columns!(),
                    ", lane FROM jobs WHERE id = $1 FOR UPDATE"
                ),
                &[&id.as_str()],
            )
            .await
            .map_err(sql)?;
        let Some(row) = found else {
            return Ok(Approval::NotFound);
        };
        let job = read_job(&row)?;
        if job.approval_until_ms().is_none() {
            return Ok(Approval::NotAwaiting(job));
        }
        let lane: String = row.get(super::rows::JOB_COLUMNS);
        let (superseded, cancel) = match self.enter_lane(&transaction, &lane, concurrency).await? {
            Ok(entered) => entered,
            // Dropping the transaction rolls it back: the job still awaits approval.
            Err(waiting) => return Ok(Approval::QueueFull { waiting }),
        };
        let approved = Cached(&transaction)
            .query_one(
                concat!(
                    // At the end of the line (`seq`), as a trigger at this moment would be.
                    "UPDATE jobs SET status = 'queued', announce_wait = false, \
                         seq = nextval(pg_get_serial_sequence('jobs', 'seq')) \
                     WHERE id = $1 RETURNING ",
                    job_columns!()
                ),
                &[&id.as_str()],
            )
            .await
            .map_err(sql)?;
        Cached(&transaction)
            .execute("SELECT pg_notify('hookrunner_work', '')", &[])
            .await
            .map_err(sql)?;
        transaction.commit().await.map_err(sql)?;
        self.committed(3, true);
        Ok(Approval::Approved {
            job: read_job(&approved)?,
            superseded,
            cancel,
        })
    }

    pub async fn reject(&self, id: &JobId) -> Result<Decided, StoreError> {
        self.settle().await;
        super::retrying("rejection", || self.reject_once(id)).await
    }

    async fn reject_once(&self, id: &JobId) -> Result<Decided, StoreError> {
        let sql = |error| self.sql(error);
        let mut client = self.client().await?;
        let transaction = super::begin(&mut client, &self.inner.failure).await?;
        let ended = self
            .end_awaiting(
                &transaction,
                "UPDATE jobs SET status = 'rejected', finished_ms = $2, announce_wait = false \
                 WHERE id = $1 AND status = 'awaiting_approval' RETURNING ",
                &[&id.as_str(), &now_ms()],
            )
            .await?;
        if let Some(job) = ended.into_iter().next() {
            transaction.commit().await.map_err(sql)?;
            self.committed(2, true);
            return Ok(Decided::Ended(job));
        }
        let found = Cached(&transaction)
            .query_opt(
                concat!("SELECT ", job_columns!(), " FROM jobs WHERE id = $1"),
                &[&id.as_str()],
            )
            .await
            .map_err(sql)?;
        Ok(match found {
            Some(row) => Decided::NotAwaiting(read_job(&row)?),
            None => Decided::NotFound,
        })
    }

    pub async fn expire_approvals(&self, now_ms: i64) -> Result<Expiry, StoreError> {
        self.settle().await;
        super::retrying("expiry", || self.expire_once(now_ms)).await
    }

    /// One transaction: the due jobs end `expired` (a job another instance is expiring at the
    /// same moment is waited for, then skipped: it no longer awaits), then the next end of a
    /// wait is read through `jobs_awaiting`.
    async fn expire_once(&self, now_ms: i64) -> Result<Expiry, StoreError> {
        let sql = |error| self.sql(error);
        let mut client = self.client().await?;
        let transaction = super::begin(&mut client, &self.inner.failure).await?;
        let mut expired = self
            .end_awaiting(
                &transaction,
                "UPDATE jobs SET status = 'expired', finished_ms = $2, announce_wait = false \
                 WHERE status = 'awaiting_approval' AND approval_until_ms <= $1 RETURNING ",
                &[&now_ms, &super::now_ms()],
            )
            .await?;
        let next_ms: Option<i64> = Cached(&transaction)
            .query_one(
                "SELECT min(approval_until_ms) FROM jobs WHERE status = 'awaiting_approval'",
                &[],
            )
            .await
            .map_err(sql)?
            .get(0);
        transaction.commit().await.map_err(sql)?;
        if !expired.is_empty() {
            self.committed(2, true);
        }
        expired.sort_by_key(|job| job.created_ms);
        Ok(Expiry { expired, next_ms })
    }

    /// Runs `update` (an `UPDATE … RETURNING `, to which the job columns are appended) that
    /// ends jobs awaiting approval, then gives their keys back and tells every instance, as for
    /// any end without success.
    async fn end_awaiting(
        &self,
        transaction: &Transaction<'_>,
        update: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Job>, StoreError> {
        let sql = |error| self.sql(error);
        let statement = format!("{update}{}", job_columns!());
        let rows = Cached(transaction)
            .query(&statement, params)
            .await
            .map_err(sql)?;
        let jobs = rows.iter().map(read_job).collect::<Result<Vec<Job>, _>>()?;
        let ids: Vec<String> = jobs.iter().map(|job| job.id.to_string()).collect();
        super::ended_unsucceeded(transaction, &ids)
            .await
            .map_err(sql)?;
        Ok(jobs)
    }
}

fn read_job(row: &tokio_postgres::Row) -> Result<Job, StoreError> {
    job_from_row(row).map_err(|error| StoreError::Database(error.into()))
}
