//! Admission: duplicates, `max_pending`, the lane's limits and supersession, and the insert, as
//! one transaction.

use deadpool_postgres::Transaction;

use super::rows::{lane_of, mode_words};
use super::Cached;
use super::{lock, now_ms, PgStore};
use crate::config::Concurrency;
use crate::job::{JobId, Status};
use crate::store::{Admission, Committed, Durability, NewJob, StoreError};

/// How often an admission looks again for the holder of a duplicate key that went away between
/// two of its statements (it ended without succeeding, which gives the key back).
const DEDUPE_TRIES: usize = 3;

/// What one try of an admission writes.
struct Admitting<'a> {
    job: &'a crate::job::Job,
    lane: &'a str,
    placed: &'a Option<String>,
    concurrency: Concurrency,
    /// The job runs after a restart: its insert waits for the disk.
    durable: bool,
    /// Its command as the `command` column keeps it.
    stored: &'a str,
    /// Its end is to be announced ([`NewJob::notify`]).
    notify: bool,
    /// It awaits approval until then ([`NewJob::approval_until_ms`]).
    approval_until_ms: Option<i64>,
}

impl PgStore {
    /// One transaction: the duplicate key is claimed first (`INSERT … ON CONFLICT DO NOTHING`,
    /// which waits for a concurrent admission of the same key to commit or roll back), then
    /// `max_pending` is checked against the cluster's queued jobs (a count without a lock, so
    /// admissions running at the same moment on several instances may each pass it: it can be
    /// exceeded by at most their number, which each instance's two pools bound to `2 × POOL_SIZE`; an
    /// exact count would serialise every admission of the cluster), then the lane: for `queue`, `latest` and `replace` its
    /// `lanes` row is locked, so the queue bound and supersession are exact across instances;
    /// `parallel` admissions take no lock. A refusal rolls everything back.
    pub async fn admit(&self, new: NewJob, max_pending: usize) -> Result<Admission, StoreError> {
        self.holding_name()?;
        let (lane, placed) = lane_of(&new.job.hook, &new.placement);
        let stored = new.command.to_stored();
        if super::direct::may_start_at_once(&new) {
            if let Some(admission) = self.admit_running(&new, &lane, &placed, &stored).await? {
                return Ok(admission);
            }
        }
        let NewJob {
            job,
            command,
            concurrency,
            notify,
            approval_until_ms,
            ..
        } = new;
        let durable = command.run_after_restart;
        if !durable {
            // Claimed by this instance only; the database has no copy of it.
            let kept = (command, std::time::Instant::now());
            lock(&self.inner.commands).insert(job.id.clone(), kept);
        }
        let admitting = Admitting {
            job: &job,
            lane: &lane,
            placed: &placed,
            concurrency,
            durable,
            stored: &stored,
            notify,
            approval_until_ms,
        };
        let admission =
            super::retrying("admission", || self.admit_once(&admitting, max_pending)).await;
        let forget = !matches!(admission, Ok(Admission::Accepted { .. }));
        if forget && !durable {
            lock(&self.inner.commands).remove(&job.id);
        }
        if let Ok(Admission::Accepted { superseded, .. }) = &admission {
            let mut commands = lock(&self.inner.commands);
            for id in superseded {
                commands.remove(id);
            }
        }
        admission
    }

    /// One try of the admission's transaction; nothing is kept unless it commits.
    async fn admit_once(
        &self,
        admitting: &Admitting<'_>,
        max_pending: usize,
    ) -> Result<Admission, StoreError> {
        let Admitting {
            job,
            lane,
            placed,
            concurrency: _,
            durable,
            stored,
            notify,
            approval_until_ms,
        } = *admitting;
        let mut client = self.client_for(Durability::disk_if(durable)).await?;
        let transaction = super::begin(&mut client, &self.inner.failure).await?;
        let decided = self.admit_in(&transaction, admitting, max_pending).await;
        match decided {
            Ok(Ok(admission)) => {
                // Other instances are woken only for a job they may claim: this one claims
                // its own after the admission, and nobody claims a job awaiting approval.
                let awaiting = approval_until_ms.is_some();
                let others_may_claim = placed.as_ref() != Some(&self.inner.instance) && !awaiting;
                let status = if awaiting {
                    Status::AwaitingApproval
                } else {
                    Status::Queued
                };
                let insert = Cached(&transaction)
                    .execute(
                        "WITH inserted AS ( \
                             INSERT INTO jobs (id, hook, request_id, status, dedupe_key, \
                                               created_ms, attempt, attempts, placement, lane, command, \
                                               notify, approval_until_ms, announce_wait) \
                             VALUES ($1, $2, $3, $13, $4, $5, $6, $7, $8, $9, $10, $12, $14, $15) \
                             RETURNING 1) \
                         SELECT pg_notify('hookrunner_work', '') FROM inserted WHERE $11",
                        &[
                            &job.id.as_str(),
                            &job.hook,
                            &job.request_id,
                            &job.dedupe_key,
                            &job.created_ms,
                            &i32::try_from(job.attempt).unwrap_or(i32::MAX),
                            &i32::try_from(job.attempts).unwrap_or(i32::MAX),
                            placed,
                            &lane,
                            &stored,
                            &others_may_claim,
                            &notify,
                            &status.as_str(),
                            &approval_until_ms,
                            &(notify && awaiting),
                        ],
                    )
                    .await;
                let committed = async {
                    insert?;
                    transaction.commit().await
                };
                match committed.await {
                    Ok(()) => {
                        // Queued: this instance's next look asks the database.
                        self.inner
                            .work_hint
                            .store(true, std::sync::atomic::Ordering::SeqCst);
                        self.committed(4, durable);
                        Ok(admission)
                    }
                    Err(error) => Err(self.sql(error)),
                }
            }
            Ok(Err(refusal)) => {
                // Dropping the transaction rolls it back.
                drop(transaction);
                Ok(refusal)
            }
            Err(error) => Err(error),
        }
    }

    /// The decisions before the insert: `Ok(Ok(accepted))` to insert, `Ok(Err(refusal))` to roll
    /// back. A job awaiting approval is not put in its lane (that waits for `approve`).
    async fn admit_in(
        &self,
        transaction: &Transaction<'_>,
        admitting: &Admitting<'_>,
        max_pending: usize,
    ) -> Result<Result<Admission, Admission>, StoreError> {
        let job = admitting.job;
        let sql = |error| self.sql(error);
        if let Some(key) = &job.dedupe_key {
            if let Some(first) = self.holder(transaction, &job.hook, key, &job.id).await? {
                return Ok(Err(Admission::Duplicate(first)));
            }
        }
        // Counted up to the bound only: a long backlog costs no more than the bound. Jobs
        // awaiting approval count too, so a flood of them is bounded.
        let pending: i64 = Cached(transaction)
            .query_one(
                "SELECT count(*) FROM (SELECT 1 FROM jobs \
                     WHERE status IN ('queued', 'awaiting_approval') LIMIT $1) AS q",
                &[&i64::try_from(max_pending).unwrap_or(i64::MAX)],
            )
            .await
            .map_err(sql)?
            .get(0);
        let pending = usize::try_from(pending).unwrap_or(0);
        if pending >= max_pending {
            return Ok(Err(Admission::ServerFull { pending }));
        }
        if admitting.approval_until_ms.is_some() {
            return Ok(Ok(accepted(Vec::new(), Vec::new())));
        }
        Ok(
            match self
                .enter_lane(transaction, admitting.lane, admitting.concurrency)
                .await?
            {
                Ok((superseded, cancel)) => Ok(accepted(superseded, cancel)),
                Err(waiting) => Err(Admission::QueueFull { waiting }),
            },
        )
    }

    /// A job's entry in its lane under `concurrency`, in `transaction`, by an admission or an
    /// approval (the job itself not yet queued): for `queue`, `latest` and `replace` the lane's
    /// row is locked until the commit, so the queue bound and supersession are exact across
    /// instances; `parallel` takes no lock. `Ok((superseded, cancel))`: the lane's waiting jobs
    /// it superseded (recorded so) and the running ones asked to stop; `Err(waiting)` when a
    /// full `queue` refuses it (the caller rolls back).
    pub(super) async fn enter_lane(
        &self,
        transaction: &Transaction<'_>,
        lane: &str,
        concurrency: Concurrency,
    ) -> Result<Result<Entered, usize>, StoreError> {
        let sql = |error| self.sql(error);
        let (mode, limit) = mode_words(concurrency);
        if let Concurrency::Parallel { .. } = concurrency {
            let known = Cached(transaction)
                .query_opt(
                    "SELECT mode, parallel_limit FROM lanes WHERE lane = $1",
                    &[&lane],
                )
                .await
                .map_err(sql)?
                .map(|row| (row.get::<_, String>(0), row.get::<_, Option<i64>>(1)));
            if known.as_ref().map(|(m, l)| (m.as_str(), *l)) == Some((mode, limit)) {
                return Ok(Ok((Vec::new(), Vec::new())));
            }
        }
        // The upsert locks the lane's row until the commit: admissions of this lane that decide
        // on its queue or supersede run one at a time.
        Cached(transaction)
            .execute(
                "INSERT INTO lanes (lane, mode, parallel_limit) VALUES ($1, $2, $3) \
                 ON CONFLICT (lane) DO UPDATE \
                 SET mode = excluded.mode, parallel_limit = excluded.parallel_limit",
                &[&lane, &mode, &limit],
            )
            .await
            .map_err(sql)?;
        match concurrency {
            Concurrency::Parallel { .. } => Ok(Ok((Vec::new(), Vec::new()))),
            Concurrency::Queue { queue } => {
                let row = Cached(transaction)
                    .query_one(
                        "SELECT count(*) FILTER (WHERE status = 'queued'), \
                                count(*) FILTER (WHERE status = 'running') \
                         FROM jobs WHERE lane = $1 AND status IN ('queued', 'running')",
                        &[&lane],
                    )
                    .await
                    .map_err(sql)?;
                let waiting = usize::try_from(row.get::<_, i64>(0)).unwrap_or(0);
                let running: i64 = row.get(1);
                // An idle lane's first waiting job starts next, so it takes no place in the
                // queue: `queue: 0` means "run when idle, refuse while busy".
                let starts_next = usize::from(running == 0);
                if waiting >= queue.saturating_add(starts_next) {
                    return Ok(Err(waiting));
                }
                Ok(Ok((Vec::new(), Vec::new())))
            }
            Concurrency::Latest | Concurrency::Replace => {
                let superseded = self.supersede(transaction, lane).await?;
                let cancel = if concurrency == Concurrency::Replace {
                    self.request_cancel(transaction, lane).await?
                } else {
                    Vec::new()
                };
                Ok(Ok((superseded, cancel)))
            }
        }
    }

    /// Claims the duplicate key for `id`; the job that holds it already, if one does.
    async fn holder(
        &self,
        transaction: &Transaction<'_>,
        hook: &str,
        key: &str,
        id: &JobId,
    ) -> Result<Option<JobId>, StoreError> {
        let sql = |error| self.sql(error);
        for _ in 0..DEDUPE_TRIES {
            let claimed = Cached(transaction)
                .query_opt(
                    "INSERT INTO dedupe (hook, key, job_id) VALUES ($1, $2, $3) \
                     ON CONFLICT DO NOTHING RETURNING job_id",
                    &[&hook, &key, &id.as_str()],
                )
                .await
                .map_err(sql)?;
            if claimed.is_some() {
                return Ok(None);
            }
            let first = Cached(transaction)
                .query_opt(
                    "SELECT job_id FROM dedupe WHERE hook = $1 AND key = $2",
                    &[&hook, &key],
                )
                .await
                .map_err(sql)?;
            if let Some(first) = first.and_then(|row| JobId::parse(row.get(0))) {
                return Ok(Some(first));
            }
        }
        Err(StoreError::Database(
            "a duplicate key kept changing hands while a job was admitted".into(),
        ))
    }

    /// The lane's waiting jobs become `superseded`, give their keys back, and the instances
    /// watching them are told.
    async fn supersede(
        &self,
        transaction: &Transaction<'_>,
        lane: &str,
    ) -> Result<Vec<JobId>, StoreError> {
        let sql = |error| self.sql(error);
        let ids: Vec<String> = Cached(transaction)
            .query(
                "UPDATE jobs SET status = 'superseded', finished_ms = $2 \
                 WHERE lane = $1 AND status = 'queued' RETURNING id",
                &[&lane, &now_ms()],
            )
            .await
            .map_err(sql)?
            .iter()
            .map(|row| row.get(0))
            .collect();
        super::ended_unsucceeded(transaction, &ids)
            .await
            .map_err(sql)?;
        Ok(ids.iter().filter_map(|id| JobId::parse(id)).collect())
    }

    /// `replace`: the lane's running jobs are asked to stop, wherever they run.
    async fn request_cancel(
        &self,
        transaction: &Transaction<'_>,
        lane: &str,
    ) -> Result<Vec<(JobId, String)>, StoreError> {
        let sql = |error| self.sql(error);
        let rows = Cached(transaction)
            .query(
                "UPDATE jobs SET cancel_requested = true \
                 WHERE lane = $1 AND status = 'running' RETURNING id, instance",
                &[&lane],
            )
            .await
            .map_err(sql)?;
        let ids: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
        if !ids.is_empty() {
            Cached(transaction)
                .execute(
                    "SELECT pg_notify('hookrunner_cancel', id) FROM unnest($1::text[]) AS id",
                    &[&ids],
                )
                .await
                .map_err(sql)?;
        }
        Ok(rows
            .iter()
            .filter_map(|row| {
                let id = JobId::parse(row.get(0))?;
                let instance: Option<String> = row.get(1);
                Some((id, instance.unwrap_or_default()))
            })
            .collect())
    }
}

/// What a job's entry in its lane did: the waiting jobs it superseded, and the running ones
/// asked to stop, with the instance running each.
pub(super) type Entered = (Vec<JobId>, Vec<(JobId, String)>);

fn accepted(superseded: Vec<JobId>, cancel: Vec<(JobId, String)>) -> Admission {
    Admission::Accepted {
        committed: Committed::done(),
        superseded,
        cancel,
        started: None,
    }
}
