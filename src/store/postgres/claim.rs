//! Claiming: one short transaction under the cluster's claim lock reads the queued heads of each
//! lane and the running counts, lets `decide` choose, and records the chosen jobs running here.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use deadpool_postgres::Transaction;

use super::decide::{decide, Candidate, LaneLoad};
use super::rows::{capacity, job_columns, job_from_row, Ending, JOB_COLUMNS};
use super::schema::{CLAIM_LOCK, LOCK_SPACE};
use super::Cached;
use super::{lock, now_ms, synchronous_commit, PgStore};
use crate::command::JobCommand;
use crate::job::{Job, JobId};
use crate::store::{stored_command, Claimed, Committed, Durability, StoreError, WorkWaiting};

/// Takes the cluster's claim lock for the transaction, and bounds how long the transaction may
/// sit idle: a claimer whose connection vanished without closing (a network partition) would
/// otherwise hold every instance's claims until the server's TCP keepalive noticed (hours by
/// default).
fn claim_lock() -> String {
    format!(
        "SET LOCAL idle_in_transaction_session_timeout = '{}ms'; \
         SELECT pg_advisory_xact_lock({LOCK_SPACE}, {CLAIM_LOCK})",
        CLAIM_IDLE_LIMIT.as_millis()
    )
}

/// The longest a claim's transaction may wait for its client between two statements.
const CLAIM_IDLE_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

impl PgStore {
    /// Claims serialise across the cluster (admissions do not wait for them), so two instances
    /// never count the same free place in a lane. A claim aborted by a deadlock is tried again.
    pub async fn claim(&self, free: usize) -> Result<Vec<Claimed>, StoreError> {
        if free == 0 {
            return Ok(Vec::new());
        }
        self.holding_name()?;
        let claimed = super::retrying("claim", || self.claim_once(free)).await;
        if !matches!(&claimed, Ok(claimed) if claimed.len() < free) {
            // It took all it could (or failed): more may wait.
            self.inner.work_hint.store(true, Ordering::SeqCst);
        }
        let claimed = claimed?;
        let mut running = lock(&self.inner.running);
        running.extend(claimed.iter().map(|claimed| claimed.job.id.clone()));
        Ok(claimed)
    }

    /// How many queued jobs this instance may run, counting to `up_to` at most: one look
    /// without the claim lock, so a claim with nothing to do (most of them, once jobs start at
    /// their admission) neither waits for the lock nor holds up the others. A job queued after
    /// the look is not missed: its admission wakes the instances that may claim it (this one,
    /// through `NOTIFY` or its own admission), and the wake-up looks again.
    pub async fn work_waiting(&self, up_to: usize) -> Result<WorkWaiting, StoreError> {
        let unsettled = lock(&self.inner.unsettled).len();
        if unsettled > 0 {
            return Ok(WorkWaiting {
                now: up_to.max(unsettled),
                next_due_ms: *lock(&self.inner.next_due_ms),
            });
        }
        // Asked only after a word of work, or once the first retry known to wait is due.
        let hint = &self.inner.work_hint;
        let next_due_ms = *lock(&self.inner.next_due_ms);
        let due = next_due_ms.is_some_and(|due_ms| due_ms <= now_ms());
        if !hint.swap(false, Ordering::SeqCst) && !due {
            return Ok(WorkWaiting {
                now: 0,
                next_due_ms,
            });
        }
        let looked = self.count_waiting(up_to).await;
        match &looked {
            Ok(waiting) => {
                *lock(&self.inner.next_due_ms) = waiting.next_due_ms;
                // It found as many as it may take: more may wait, the next look asks again.
                if waiting.now >= up_to {
                    hint.store(true, Ordering::SeqCst);
                }
            }
            Err(_) => hint.store(true, Ordering::SeqCst),
        }
        looked
    }

    /// The next look asks the database, whatever the hint says.
    pub fn look_again(&self) {
        self.inner.work_hint.store(true, Ordering::SeqCst);
    }

    async fn count_waiting(&self, up_to: usize) -> Result<WorkWaiting, StoreError> {
        let client = self.client().await?;
        // The jobs due now, and when the first retry not yet due is (through `jobs_retry_due`).
        let row = Cached(&client)
            .query_one(
                "SELECT (SELECT count(*) FROM (SELECT 1 FROM jobs WHERE status = 'queued' \
                         AND (placement IS NULL OR placement = $1) \
                         AND (next_attempt_ms IS NULL OR next_attempt_ms <= $3) \
                         LIMIT $2) AS waiting), \
                        (SELECT min(next_attempt_ms) FROM jobs WHERE status = 'queued' \
                         AND next_attempt_ms > $3 AND (placement IS NULL OR placement = $1))",
                &[
                    &self.inner.instance,
                    &i64::try_from(up_to).unwrap_or(i64::MAX),
                    &now_ms(),
                ],
            )
            .await
            .map_err(|error| self.sql(error))?;
        Ok(WorkWaiting {
            now: usize::try_from(row.get::<_, i64>(0)).unwrap_or(0),
            next_due_ms: row.get(1),
        })
    }

    /// One try of the claim's transaction. Jobs whose claim may have committed without this
    /// instance hearing so (the connection failed after `COMMIT` was sent) are `unsettled`: the
    /// next claim hands over those it finds running here, which never started, before any other.
    async fn claim_once(&self, free: usize) -> Result<Vec<Claimed>, StoreError> {
        let mut client = self.client().await?;
        let transaction = super::begin(&mut client, &self.inner.failure).await?;
        let sql = |error| self.sql(error);
        transaction
            .batch_execute(&claim_lock())
            .await
            .map_err(sql)?;
        let unsettled: Vec<String> = lock(&self.inner.unsettled)
            .iter()
            .map(JobId::to_string)
            .collect();
        let mut rows = if unsettled.is_empty() {
            Vec::new()
        } else {
            Cached(&transaction)
                .query(
                    concat!(
                        "SELECT ",
                        job_columns!(),
                        ", command FROM jobs WHERE id = ANY($1) AND status = 'running' \
                         AND instance = $2 ORDER BY seq"
                    ),
                    &[&unsettled, &self.inner.instance],
                )
                .await
                .map_err(sql)?
        };
        // Handed over within `free` (slots were held for no more); the rest wait for the next
        // claim. Those not running here are not ours: settled too.
        let running_here: std::collections::HashSet<String> =
            rows.iter().map(|row| row.get::<_, String>(0)).collect();
        rows.truncate(free);
        let handed: std::collections::HashSet<String> =
            rows.iter().map(|row| row.get::<_, String>(0)).collect();
        let settled: Vec<&String> = unsettled
            .iter()
            .filter(|id| handed.contains(*id) || !running_here.contains(*id))
            .collect();
        let chosen = self
            .choose(&transaction, free.saturating_sub(rows.len()))
            .await?;
        if chosen.is_empty() && unsettled.is_empty() {
            return Ok(Vec::new());
        }
        if !chosen.is_empty() {
            rows.extend(
                Cached(&transaction)
                    .query(
                        concat!(
                            "UPDATE jobs SET status = 'running', instance = $2, started_ms = $3, \
                             next_attempt_ms = NULL \
                             WHERE id = ANY($1) AND status = 'queued' RETURNING ",
                            job_columns!(),
                            ", command"
                        ),
                        &[&chosen, &self.inner.instance, &now_ms()],
                    )
                    .await
                    .map_err(sql)?,
            );
        }
        let mut claimed = Vec::with_capacity(rows.len());
        let mut unrunnable = Vec::new();
        for row in &rows {
            let job = match job_from_row(row) {
                Ok(job) => job,
                Err(error) => {
                    tracing::error!(%error, "a claimed job's row cannot be read; leaving it");
                    continue;
                }
            };
            match self.command_of(&job.id, row.get(JOB_COLUMNS)) {
                Ok(command) => claimed.push((job, command)),
                Err(outcome) => unrunnable.push((job, outcome)),
            }
        }
        for (job, outcome) in &mut unrunnable {
            if job.finish(outcome.clone(), now_ms()).is_ok() {
                self.end_unrun(&transaction, job).await?;
            }
        }
        // A job that runs again after a restart is on the database's disk as `running` before
        // its command starts (so a restarted database never hands it out again); the others
        // are never re-run and do not wait for the disk.
        let durable = claimed.iter().any(|(_, command)| command.run_after_restart);
        transaction
            .batch_execute(synchronous_commit(Durability::disk_if(durable)))
            .await
            .map_err(sql)?;
        if let Err(error) = transaction.commit().await {
            let error = self.sql(error);
            if !super::conflicted(&error) {
                // The commit may have been made: the next claim looks.
                lock(&self.inner.unsettled).extend(claimed.iter().map(|(job, _)| job.id.clone()));
            }
            return Err(error);
        }
        {
            // The unsettled jobs handed over just above, or not running here (their claim
            // never committed, or they ended since) so not ours to run, are settled now.
            let mut kept = lock(&self.inner.unsettled);
            for id in settled.iter().filter_map(|id| JobId::parse(id)) {
                kept.remove(&id);
            }
            let mut commands = lock(&self.inner.commands);
            for (job, _) in &claimed {
                commands.remove(&job.id);
            }
        }
        self.committed(1, durable);
        Ok(claimed
            .into_iter()
            .map(|(job, command)| Claimed {
                started: command.run_after_restart.then(Committed::done),
                job,
                command,
            })
            .collect())
    }

    /// The ids this instance starts now, at most `free`.
    async fn choose(
        &self,
        transaction: &Transaction<'_>,
        free: usize,
    ) -> Result<Vec<String>, StoreError> {
        let sql = |error| self.sql(error);
        let limit = i64::try_from(free).unwrap_or(i64::MAX);
        // Per lane, the first `free` queued jobs that are due (a retry waits for its
        // `next_attempt_ms`, holding up nobody): no more can start in one claim. Read lane by
        // lane through the `jobs_queued` index, so a long backlog costs no more than a short
        // one (every queued job's lane has its `lanes` row: its admission made sure of it).
        let heads = Cached(transaction)
            .query(
                "SELECT heads.id, l.lane, heads.seq, heads.placement FROM lanes l \
                 CROSS JOIN LATERAL ( \
                     SELECT id, seq, placement FROM jobs \
                     WHERE jobs.lane = l.lane AND status = 'queued' \
                       AND (next_attempt_ms IS NULL OR next_attempt_ms <= $2) \
                     ORDER BY seq LIMIT $1) AS heads \
                 ORDER BY heads.seq",
                &[&limit, &now_ms()],
            )
            .await
            .map_err(sql)?;
        let candidates: Vec<Candidate> = heads
            .iter()
            .map(|row| Candidate {
                id: row.get(0),
                lane: row.get(1),
                seq: row.get(2),
                placement: row.get(3),
            })
            .collect();
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let mut lanes: Vec<&str> = candidates.iter().map(|c| c.lane.as_str()).collect();
        lanes.sort_unstable();
        lanes.dedup();
        let loads = Cached(transaction)
            .query(
                "SELECT l.lane, l.mode, l.parallel_limit, \
                        (SELECT count(*) FROM jobs j WHERE j.lane = l.lane AND j.status = 'running') \
                 FROM lanes l WHERE l.lane = ANY($1)",
                &[&lanes],
            )
            .await
            .map_err(sql)?;
        let loads: HashMap<String, LaneLoad> = loads
            .iter()
            .map(|row| {
                let load = LaneLoad {
                    capacity: capacity(row.get(1), row.get(2)),
                    running: usize::try_from(row.get::<_, i64>(3)).unwrap_or(0),
                };
                (row.get(0), load)
            })
            .collect();
        Ok(decide(&self.inner.instance, free, candidates, &loads))
    }

    /// A claimed job's command: kept here (a `wait` or `stream` job admitted here), or stored.
    fn command_of(&self, id: &JobId, stored: &str) -> Result<JobCommand, crate::job::Outcome> {
        // Cloned, not taken: the claim may not commit. It is forgotten once it does.
        if let Some((command, _)) = lock(&self.inner.commands).get(id) {
            return Ok(command.clone());
        }
        stored_command(stored)
    }

    /// Records the end of a job that ended without running, in `transaction`, giving its
    /// duplicate key back.
    pub(super) async fn end_unrun(
        &self,
        transaction: &Transaction<'_>,
        job: &Job,
    ) -> Result<(), StoreError> {
        let Some(ending) = Ending::of(job) else {
            return Ok(());
        };
        let sql = |error| self.sql(error);
        Cached(transaction)
            .execute(
                "UPDATE jobs SET status = $2, finished_ms = $3, error = $4, \
                 started_ms = NULL, instance = NULL WHERE id = $1",
                &[
                    &job.id.as_str(),
                    &ending.status,
                    &ending.finished_ms,
                    &ending.error,
                ],
            )
            .await
            .map_err(sql)?;
        Cached(transaction)
            .execute("DELETE FROM dedupe WHERE job_id = $1", &[&job.id.as_str()])
            .await
            .map_err(sql)?;
        Ok(())
    }
}
