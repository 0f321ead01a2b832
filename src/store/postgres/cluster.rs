//! This instance in the cluster: its row in `instances` (what a previous run left is ended when
//! it is written), its heartbeat, the reaping of instances unheard of for a lease, and leaving
//! at `close`. Its name is held by the listener's connection (`listener.rs`).

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Transaction;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::Cached;
use super::{lock, now_ms, PgStore};
use crate::job::JobId;
use crate::store::{StoreError, StoreEvent};

/// The error of a job that was running on an instance that stopped and started again.
const RESTARTED_ERROR: &str = "the server stopped while the command ran";

/// The error of a job placed on an instance that stopped before it ran.
const NEVER_RAN_ERROR: &str =
    "the instance this job was placed on stopped before it started; only `async` jobs any instance may run survive that";

/// How old a kept command must be before the heartbeat looks whether its job still waits:
/// far longer than an admission's transaction may take to commit.
const COMMAND_AGE: Duration = Duration::from_secs(60);

impl PgStore {
    /// Ends what a previous run of this instance left (its running jobs and the queued ones
    /// placed on it become `interrupted`) and records this run. The name is held, so no live
    /// process runs those jobs.
    pub(super) async fn register(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let transaction = super::begin(&mut client, &self.inner.failure).await?;
        let me = self.inner.instance.clone();
        let ended = self
            .interrupt(&transaction, &me, RESTARTED_ERROR, NEVER_RAN_ERROR)
            .await?;
        if ended > 0 {
            tracing::warn!(
                count = ended,
                "jobs a previous run of this instance left were recorded `interrupted`"
            );
        }
        self.upsert_row(&transaction).await?;
        transaction.commit().await.map_err(|e| self.sql(e))?;
        self.committed(3, true);
        Ok(())
    }

    async fn upsert_row(&self, transaction: &Transaction<'_>) -> Result<(), StoreError> {
        Cached(transaction)
            .execute(
                "INSERT INTO instances (name, version, started_at, heartbeat_at, boot) \
                 VALUES ($1, $2, now(), now(), $3) \
                 ON CONFLICT (name) DO UPDATE SET version = excluded.version, \
                     started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at, \
                     boot = excluded.boot",
                &[
                    &self.inner.instance,
                    &env!("CARGO_PKG_VERSION"),
                    &self.inner.boot,
                ],
            )
            .await
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// An instance's running jobs and the queued jobs placed on it become `interrupted`, and
    /// give their duplicate keys back; returns how many. A running job whose hook retries
    /// `interrupted` is queued for its next attempt instead (not counted); placed on this
    /// instance itself (its own restart), that retry stays queued for it.
    async fn interrupt(
        &self,
        transaction: &Transaction<'_>,
        instance: &str,
        running_error: &str,
        queued_error: &str,
    ) -> Result<usize, StoreError> {
        let sql = |error| self.sql(error);
        let retried = self.retry_interrupted(transaction, instance).await?;
        let now = now_ms();
        let mut ids: Vec<String> = Cached(transaction)
            .query(
                "UPDATE jobs SET status = 'interrupted', finished_ms = $2, error = $3, \
                 duration_ms = greatest($2 - started_ms, 0) \
                 WHERE status = 'running' AND instance = $1 RETURNING id",
                &[&instance, &now, &running_error],
            )
            .await
            .map_err(sql)?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let queued = Cached(transaction)
            .query(
                "UPDATE jobs SET status = 'interrupted', finished_ms = $2, error = $3 \
                 WHERE status = 'queued' AND placement = $1 \
                   AND NOT ($4 AND next_attempt_ms IS NOT NULL) RETURNING id",
                &[
                    &instance,
                    &now,
                    &queued_error,
                    &(instance == self.inner.instance),
                ],
            )
            .await
            .map_err(sql)?;
        ids.extend(queued.iter().map(|row| row.get::<_, String>(0)));
        if !ids.is_empty() || retried > 0 {
            super::ended_unsucceeded(transaction, &ids)
                .await
                .map_err(sql)?;
            Cached(transaction)
                .execute("SELECT pg_notify('hookrunner_work', '')", &[])
                .await
                .map_err(sql)?;
        }
        Ok(ids.len())
    }

    /// Every `heartbeat`: says this instance is alive, reaps the instances unheard of for a
    /// lease, and polls for what a missed notification would have said.
    pub(super) fn heartbeat_every(&self, events: mpsc::UnboundedSender<StoreEvent>) {
        let weak = Arc::downgrade(&self.inner);
        let every = self.inner.heartbeat;
        let stop = self.inner.stop.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    () = stop.cancelled() => return,
                }
                let Some(store) = PgStore::upgrade(&weak) else {
                    return;
                };
                if let Err(error) = store.beat(&events).await {
                    *lock(&store.inner.beating_since) = None;
                    tracing::warn!(%error, "cannot send this instance's heartbeat to the job store");
                }
            }
        });
        lock(&self.inner.tasks).push(task);
    }

    async fn beat(&self, events: &mpsc::UnboundedSender<StoreEvent>) -> Result<(), StoreError> {
        let inner = &self.inner;
        let mut client = self.client().await?;
        let beaten = Cached(&client)
            .execute(
                "UPDATE instances SET heartbeat_at = now() WHERE name = $1 AND boot = $2",
                &[&inner.instance, &inner.boot],
            )
            .await
            .map_err(|e| self.sql(e))?;
        if beaten == 0 {
            tracing::warn!(
                "another instance took this one for dead (its lease ran out); joining the cluster again"
            );
            let transaction = super::begin(&mut client, &self.inner.failure).await?;
            self.upsert_row(&transaction).await?;
            transaction.commit().await.map_err(|e| self.sql(e))?;
        }
        let heard_for = lock(&inner.beating_since)
            .get_or_insert_with(std::time::Instant::now)
            .elapsed();
        let reaped = if heard_for >= inner.lease {
            self.reap(&mut client).await?
        } else {
            0
        };
        if reaped > 0 {
            tracing::warn!(
                count = reaped,
                "recorded the jobs of silent instances `interrupted`"
            );
        }
        let waiting: i64 = Cached(&client)
            .query_one(
                "SELECT count(*) FROM jobs WHERE status IN ('queued', 'awaiting_approval')",
                &[],
            )
            .await
            .map_err(|e| self.sql(e))?
            .get(0);
        inner.waiting.store(
            usize::try_from(waiting).unwrap_or(0),
            std::sync::atomic::Ordering::Relaxed,
        );
        let cancelled = Cached(&client)
            .query(
                "SELECT id FROM jobs WHERE status = 'running' AND instance = $1 \
                 AND cancel_requested",
                &[&inner.instance],
            )
            .await
            .map_err(|e| self.sql(e))?;
        for row in &cancelled {
            if let Some(id) = JobId::parse(row.get(0)) {
                let _ = events.send(StoreEvent::Cancel(id));
            }
        }
        self.stop_lost_jobs(&client, events).await?;
        self.forget_ended_commands(&client).await?;
        // The polling fallback: a word lost on the way (or a job that became claimable without
        // one) is found within a heartbeat.
        self.inner
            .work_hint
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = events.send(StoreEvent::Work);
        Ok(())
    }

    /// Asks this instance to stop the jobs it runs that are no longer recorded running here:
    /// another instance took this one for dead (its heartbeats did not get through for a lease)
    /// and recorded them `interrupted`, so a redelivery may already run them elsewhere.
    async fn stop_lost_jobs(
        &self,
        client: &deadpool_postgres::Client,
        events: &mpsc::UnboundedSender<StoreEvent>,
    ) -> Result<(), StoreError> {
        let running: Vec<String> = lock(&self.inner.running)
            .iter()
            .map(JobId::to_string)
            .collect();
        if running.is_empty() {
            return Ok(());
        }
        let still: std::collections::HashSet<String> = Cached(client)
            .query(
                "SELECT id FROM jobs WHERE id = ANY($1) AND status = 'running' AND instance = $2",
                &[&running, &self.inner.instance],
            )
            .await
            .map_err(|e| self.sql(e))?
            .iter()
            .map(|row| row.get(0))
            .collect();
        for id in running.iter().filter(|id| !still.contains(*id)) {
            let Some(id) = JobId::parse(id) else { continue };
            // Finished here meanwhile: nothing to stop.
            if !lock(&self.inner.running).remove(&id) {
                continue;
            }
            tracing::warn!(
                job_id = %id,
                "a job running here is no longer recorded running here (another instance took this one for dead); stopping it"
            );
            let _ = events.send(StoreEvent::Cancel(id));
        }
        Ok(())
    }

    /// Drops the kept commands of jobs that ended without being claimed here (superseded or
    /// cancelled by another instance), so the map holds only jobs still waiting.
    async fn forget_ended_commands(
        &self,
        client: &deadpool_postgres::Client,
    ) -> Result<(), StoreError> {
        let kept: Vec<String> = lock(&self.inner.commands)
            .iter()
            .filter(|(_, (_, kept))| kept.elapsed() >= COMMAND_AGE)
            .map(|(id, _)| id.to_string())
            .collect();
        if kept.is_empty() {
            return Ok(());
        }
        let waiting: std::collections::HashSet<String> = Cached(client)
            .query(
                "SELECT id FROM jobs WHERE id = ANY($1) AND status = 'queued'",
                &[&kept],
            )
            .await
            .map_err(|e| self.sql(e))?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let mut commands = lock(&self.inner.commands);
        for id in kept.iter().filter(|id| !waiting.contains(*id)) {
            if let Some(id) = JobId::parse(id) {
                commands.remove(&id);
            }
        }
        Ok(())
    }

    /// In one transaction, the instances unheard of for a lease (skipping those another
    /// instance is reaping): their jobs are interrupted and their rows deleted. Returns how
    /// many jobs ended.
    async fn reap(&self, client: &mut deadpool_postgres::Client) -> Result<usize, StoreError> {
        let transaction = super::begin(client, &self.inner.failure).await?;
        let silent = Cached(&transaction)
            .query(
                "SELECT name, extract(epoch FROM now() - heartbeat_at)::bigint FROM instances \
                 WHERE heartbeat_at < now() - make_interval(secs => $1) AND name <> $2 \
                 FOR UPDATE SKIP LOCKED",
                &[&self.inner.lease.as_secs_f64(), &self.inner.instance],
            )
            .await
            .map_err(|e| self.sql(e))?;
        let mut ended = 0;
        for row in &silent {
            let name: String = row.get(0);
            let silence: i64 = row.get(1);
            let error = format!("instance `{name}` stopped (no heartbeat for {silence}s)");
            ended += self.interrupt(&transaction, &name, &error, &error).await?;
            Cached(&transaction)
                .execute("DELETE FROM instances WHERE name = $1", &[&name])
                .await
                .map_err(|e| self.sql(e))?;
            tracing::warn!(
                instance = name,
                silence_s = silence,
                "an instance stopped heartbeating; its jobs are recorded `interrupted`"
            );
        }
        transaction.commit().await.map_err(|e| self.sql(e))?;
        Ok(ended)
    }

    /// Stops the heartbeat and the listener (which releases the name) and deletes this run's
    /// row. Call after the engine ended its jobs.
    pub async fn close(&self) {
        self.inner.stop.cancel();
        let tasks: Vec<JoinHandle<()>> = lock(&self.inner.tasks).drain(..).collect();
        for task in tasks {
            let _ = task.await;
        }
        let deleted = async {
            let client = self.client().await?;
            Cached(&client)
                .execute(
                    "DELETE FROM instances WHERE name = $1 AND boot = $2",
                    &[&self.inner.instance, &self.inner.boot],
                )
                .await
                .map_err(|e| self.sql(e))
        };
        if let Err(error) = deleted.await {
            tracing::warn!(%error, "cannot remove this instance from the job store's list");
        }
    }
}
