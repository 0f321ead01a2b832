//! The job calls that are not admission or claiming: ends (through the outbox), cancellation,
//! reads, logs, pruning, and the instances as `GET /instances` shows them.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio_postgres::types::ToSql;

use super::rows::{job_columns, job_from_row};
use super::Cached;
use super::{lock, now_ms, PgStore};
use crate::command::JobCommand;
use crate::config::Concurrency;
use crate::job::{Job, JobId, Status};
use crate::store::log::LOG_READ_SIZE;
use crate::store::{
    CancelResult, Committed, Durability, InstanceInfo, ListQuery, LogWriter, Page, StoreError,
};

/// The most output rows one log read looks at (a quiet job writes small rows).
const LOG_READ_ROWS: i64 = 512;

impl PgStore {
    pub fn finish(&self, job: &Job, durability: Durability) -> Committed {
        lock(&self.inner.commands).remove(&job.id);
        lock(&self.inner.running).remove(&job.id);
        self.inner.outbox.finish(job, durability)
    }

    pub fn log_writer(&self, id: &JobId) -> LogWriter {
        LogWriter::Rows(self.inner.outbox.writer(id))
    }

    /// A queued job, or one awaiting approval, becomes `cancelled` (and the instances watching
    /// it are told); a running one gets `cancel_requested`, and the instance running it is told.
    pub async fn cancel(&self, id: &JobId) -> Result<CancelResult, StoreError> {
        self.settle().await;
        super::retrying("cancellation", || self.cancel_once(id)).await
    }

    async fn cancel_once(&self, id: &JobId) -> Result<CancelResult, StoreError> {
        let mut client = self.client().await?;
        let transaction = super::begin(&mut client, &self.inner.failure).await?;
        let sql = |error| self.sql(error);
        let dequeued = Cached(&transaction)
            .query_opt(
                concat!(
                    "UPDATE jobs SET status = 'cancelled', finished_ms = $2, announce_wait = false \
                     WHERE id = $1 AND status IN ('queued', 'awaiting_approval') RETURNING ",
                    job_columns!()
                ),
                &[&id.as_str(), &now_ms()],
            )
            .await
            .map_err(sql)?;
        if let Some(row) = dequeued {
            Cached(&transaction)
                .execute("DELETE FROM dedupe WHERE job_id = $1", &[&id.as_str()])
                .await
                .map_err(sql)?;
            Cached(&transaction)
                .execute("SELECT pg_notify('hookrunner_ended', $1)", &[&id.as_str()])
                .await
                .map_err(sql)?;
            transaction.commit().await.map_err(sql)?;
            self.committed(2, true);
            lock(&self.inner.commands).remove(id);
            let job = job_from_row(&row).map_err(|error| StoreError::Database(error.into()))?;
            return Ok(CancelResult::Dequeued(Box::new(job)));
        }
        let running = Cached(&transaction)
            .query_opt(
                "UPDATE jobs SET cancel_requested = true \
                 WHERE id = $1 AND status = 'running' RETURNING instance",
                &[&id.as_str()],
            )
            .await
            .map_err(sql)?;
        if let Some(row) = running {
            Cached(&transaction)
                .execute("SELECT pg_notify('hookrunner_cancel', $1)", &[&id.as_str()])
                .await
                .map_err(sql)?;
            transaction.commit().await.map_err(sql)?;
            self.committed(1, true);
            let instance: Option<String> = row.get(0);
            return Ok(CancelResult::Running {
                instance: instance.unwrap_or_default(),
            });
        }
        let status = Cached(&transaction)
            .query_opt("SELECT status FROM jobs WHERE id = $1", &[&id.as_str()])
            .await
            .map_err(sql)?
            .and_then(|row| Status::parse(row.get(0)));
        Ok(match status {
            Some(status) => CancelResult::AlreadyFinished(status),
            None => CancelResult::NotFound,
        })
    }

    pub async fn get(&self, id: &JobId) -> Result<Option<Job>, StoreError> {
        self.settle().await;
        let client = self.client().await?;
        let row = Cached(&client)
            .query_opt(
                concat!("SELECT ", job_columns!(), " FROM jobs WHERE id = $1"),
                &[&id.as_str()],
            )
            .await
            .map_err(|e| self.sql(e))?;
        row.map(|row| job_from_row(&row))
            .transpose()
            .map_err(|error| StoreError::Database(error.into()))
    }

    pub async fn command(&self, id: &JobId) -> Result<Option<JobCommand>, StoreError> {
        self.settle().await;
        let client = self.client().await?;
        let row = Cached(&client)
            .query_opt("SELECT command FROM jobs WHERE id = $1", &[&id.as_str()])
            .await
            .map_err(|e| self.sql(e))?;
        match row {
            Some(row) => crate::store::read_command(row.get(0)),
            None => Ok(None),
        }
    }

    /// Newest first by `seq`; one more row than asked says whether there is a next page.
    pub async fn list(&self, query: ListQuery) -> Result<Page, StoreError> {
        let limit = query.limit.max(1);
        let status = query.status.map(Status::as_str);
        let before = query.before.as_ref().map(JobId::as_str);
        let fetch = i64::try_from(limit + 1).unwrap_or(i64::MAX);
        let mut sql = String::from(concat!("SELECT ", job_columns!(), " FROM jobs WHERE true"));
        let mut values: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(4);
        if let Some(hook) = &query.hook {
            values.push(hook);
            sql.push_str(&format!(" AND hook = ${}", values.len()));
        }
        if let Some(status) = &status {
            values.push(status);
            sql.push_str(&format!(" AND status = ${}", values.len()));
        }
        if let Some(before) = &before {
            values.push(before);
            sql.push_str(&format!(
                " AND seq < (SELECT seq FROM jobs WHERE id = ${})",
                values.len()
            ));
        }
        values.push(&fetch);
        self.settle().await;
        sql.push_str(&format!(" ORDER BY seq DESC LIMIT ${}", values.len()));
        let client = self.client().await?;
        let rows = client.query(&sql, &values).await.map_err(|e| self.sql(e))?;
        let mut jobs = rows
            .iter()
            .map(job_from_row)
            .collect::<Result<Vec<Job>, String>>()
            .map_err(|error| StoreError::Database(error.into()))?;
        let more = jobs.len() > limit;
        jobs.truncate(limit);
        let next = more
            .then(|| jobs.last().map(|job| job.id.clone()))
            .flatten();
        Ok(Page { jobs, next })
    }

    /// What a previous run of this instance left was ended when it took its name (see
    /// `cluster`), before anything could be claimed; jobs any instance may run stay queued for
    /// everyone, so none comes back here. The notifications that run held are let go.
    pub async fn recover(
        &self,
        _concurrency_of: &(dyn Fn(&str) -> Concurrency + Sync),
    ) -> Result<Vec<Job>, StoreError> {
        self.release_holds().await?;
        Ok(Vec::new())
    }

    /// Up to [`LOG_READ_SIZE`] bytes from `offset`, out of the rows that cover it, stopping at a
    /// gap (a row still in another instance's outbox).
    pub async fn read_log(&self, id: &JobId, offset: u64) -> Result<Bytes, StoreError> {
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        self.settle().await;
        let client = self.client().await?;
        let rows = Cached(&client)
            .query(
                "SELECT start, data FROM job_output \
                 WHERE job_id = $1 AND start + length(data) > $2 ORDER BY start LIMIT $3",
                &[&id.as_str(), &offset, &LOG_READ_ROWS],
            )
            .await
            .map_err(|e| self.sql(e))?;
        let mut piece = BytesMut::new();
        let mut at = offset;
        for row in &rows {
            let start: i64 = row.get(0);
            let data: &[u8] = row.get(1);
            if start > at {
                break;
            }
            let skip = usize::try_from(at - start).unwrap_or(usize::MAX);
            let data = data.get(skip..).unwrap_or_default();
            let room = LOG_READ_SIZE - piece.len();
            piece.extend_from_slice(&data[..data.len().min(room)]);
            at = start + i64::try_from(skip + data.len()).unwrap_or(i64::MAX);
            if piece.len() >= LOG_READ_SIZE {
                break;
            }
        }
        Ok(piece.freeze())
    }

    /// Deletes the finished jobs (never one awaiting approval) created more than `max_age` ago
    /// or not among the newest `max_jobs` (by `seq`); their output and keys go with them (`ON
    /// DELETE CASCADE`), and in
    /// the same statement the delivered or failed notifications of those jobs and of jobs pruned
    /// before (a pending one outlives its job until it is settled).
    pub async fn prune(&self, max_age: Duration, max_jobs: usize) -> Result<usize, StoreError> {
        let max_age_ms = i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
        let created_before_ms = now_ms().saturating_sub(max_age_ms);
        let keep = i64::try_from(max_jobs).unwrap_or(i64::MAX);
        let client = self.client().await?;
        // With fewer than `max_jobs` jobs the sub-select is NULL, which matches nothing. The
        // statement's snapshot still sees the jobs it deletes, hence `gone`.
        let deleted: i64 = Cached(&client)
            .query_one(
                "WITH gone AS ( \
                     DELETE FROM jobs \
                     WHERE status NOT IN ('queued', 'running', 'awaiting_approval') AND NOT notify \
                       AND (created_ms < $1 \
                            OR seq <= (SELECT seq FROM jobs ORDER BY seq DESC LIMIT 1 OFFSET $2)) \
                     RETURNING id \
                 ), settled AS ( \
                     DELETE FROM notifications n \
                     WHERE n.status <> 'pending' \
                       AND (n.job IN (SELECT id FROM gone) \
                            OR NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = n.job)) \
                 ) \
                 SELECT count(*) FROM gone",
                &[&created_before_ms, &keep],
            )
            .await
            .map_err(|e| self.sql(e))?
            .get(0);
        self.committed(1, true);
        Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
    }

    /// A real write round-trip, committed durably: this instance's heartbeat.
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        self.holding_name()?;
        let client = self.client().await?;
        Cached(&client)
            .execute(
                "UPDATE instances SET heartbeat_at = now() WHERE name = $1",
                &[&self.inner.instance],
            )
            .await
            .map_err(|e| self.sql(e))?;
        self.committed(1, true);
        Ok(())
    }

    /// Every instance of the cluster, by name, with the jobs running on it.
    pub async fn instances(&self) -> Result<Vec<InstanceInfo>, StoreError> {
        let client = self.client().await?;
        let rows = Cached(&client)
            .query(
                "SELECT i.name, i.version, \
                        (extract(epoch FROM i.started_at) * 1000)::bigint, \
                        (extract(epoch FROM i.heartbeat_at) * 1000)::bigint, \
                        (SELECT count(*) FROM jobs j WHERE j.status = 'running' \
                                                       AND j.instance = i.name) \
                 FROM instances i ORDER BY i.name",
                &[],
            )
            .await
            .map_err(|e| self.sql(e))?;
        Ok(rows
            .iter()
            .map(|row| InstanceInfo {
                name: row.get(0),
                version: row.get(1),
                started_ms: row.get(2),
                heartbeat_ms: row.get(3),
                running: usize::try_from(row.get::<_, i64>(4)).unwrap_or(0),
            })
            .collect())
    }
}
