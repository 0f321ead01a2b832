//! This instance in the cluster: its name (a session advisory lock on the listener's own
//! connection, released the moment the process dies), its row in `instances` and heartbeat, the
//! reaping of instances unheard of for a lease, and the `LISTEN` connection that turns other
//! instances' notifications into [`StoreEvent`]s, reconnecting by itself.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Transaction;
use futures_util::StreamExt as _;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client, NoTls};

use super::schema::NAME_SPACE;
use super::Cached;
use super::{lock, now_ms, Failure, PgStore};
use crate::job::JobId;
use crate::store::{StoreError, StoreEvent};

/// The error of a job that was running on an instance that stopped and started again.
const RESTARTED_ERROR: &str = "the server stopped while the command ran";

/// The error of a job placed on an instance that stopped before it ran.
const NEVER_RAN_ERROR: &str =
    "the instance this job was placed on stopped before it started; only `async` jobs any instance may run survive that";

/// The first and longest wait between two tries to reconnect the listener.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How old a kept command must be before the heartbeat looks whether its job still waits:
/// far longer than an admission's transaction may take to commit.
const COMMAND_AGE: Duration = Duration::from_secs(60);

/// How far before a lost connection was noticed its notifications may have been missed.
const MISSED_MARGIN_MS: i64 = 60_000;

/// The listener's connection: holds this instance's name and hears the notifications.
pub(super) struct Listener {
    client: Client,
    /// Ends when the connection does.
    connection: JoinHandle<()>,
}

impl Listener {
    /// Connects, takes the name `instance` (refused while another live process holds it) and
    /// listens on the three channels.
    pub async fn connect(
        config: &tokio_postgres::Config,
        instance: &str,
        failure: &Failure,
        events: &mpsc::UnboundedSender<StoreEvent>,
    ) -> Result<Listener, StoreError> {
        let sql = |error| failure.sql(error);
        let (client, mut connection) = config.connect(NoTls).await.map_err(sql)?;
        let sender = events.clone();
        let connection = tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(notification)) => {
                        let id = JobId::parse(notification.payload());
                        let event = match (notification.channel(), id) {
                            ("hookrunner_work", _) => StoreEvent::Work,
                            ("hookrunner_cancel", Some(id)) => StoreEvent::Cancel(id),
                            ("hookrunner_ended", Some(id)) => StoreEvent::Ended(id),
                            _ => continue,
                        };
                        let _ = sender.send(event);
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(%error, "the job store's listening connection failed");
                        break;
                    }
                }
            }
        });
        let taken: bool = client
            .query_one(
                "SELECT pg_try_advisory_lock($1, hashtext($2))",
                &[&NAME_SPACE, &instance],
            )
            .await
            .map_err(sql)?
            .get(0);
        if !taken {
            let heard = client
                .query_opt(
                    "SELECT extract(epoch FROM now() - heartbeat_at)::bigint \
                     FROM instances WHERE name = $1",
                    &[&instance],
                )
                .await
                .map_err(sql)?
                .map(|row| format!(" (last heartbeat {}s ago)", row.get::<_, i64>(0).max(0)))
                .unwrap_or_default();
            return Err(StoreError::InstanceTaken {
                name: instance.to_string(),
                heard,
            });
        }
        client
            .batch_execute(
                "LISTEN hookrunner_work; LISTEN hookrunner_cancel; LISTEN hookrunner_ended",
            )
            .await
            .map_err(sql)?;
        Ok(Listener { client, connection })
    }

    /// Keeps the connection up until the store closes: a lost one is made again (with the name
    /// and the channels), and what may have been missed meanwhile is told again: `Work`, and
    /// `Ended` for the jobs placed here that ended elsewhere since (a `Cancel` missed is told by
    /// the heartbeat's polling).
    pub fn serve(
        self,
        store: &PgStore,
        config: tokio_postgres::Config,
        events: mpsc::UnboundedSender<StoreEvent>,
    ) {
        let stop = store.inner.stop.clone();
        // Weak, so dropping the last handle stops the task (and releases the name).
        let weak = Arc::downgrade(&store.inner);
        let task = tokio::spawn(async move {
            let mut listener = self;
            loop {
                tokio::select! {
                    _ = &mut listener.connection => {}
                    () = stop.cancelled() => {
                        // Closing the connection releases the name at once.
                        drop(listener.client);
                        let _ = listener.connection.await;
                        return;
                    }
                }
                drop(listener.client);
                let lost_ms = now_ms();
                let mut backoff = FIRST_BACKOFF;
                listener = loop {
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = stop.cancelled() => return,
                    }
                    let Some(store) = PgStore::upgrade(&weak) else {
                        return;
                    };
                    let failure = &store.inner.failure;
                    match Listener::connect(&config, &store.inner.instance, failure, &events).await
                    {
                        Ok(listener) => break listener,
                        Err(error) => {
                            tracing::warn!(%error, "cannot listen to the job store again yet");
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                        }
                    }
                };
                tracing::info!("listening to the job store again");
                let _ = events.send(StoreEvent::Work);
                let Some(store) = PgStore::upgrade(&weak) else {
                    return;
                };
                match store.ended_here_since(lost_ms - MISSED_MARGIN_MS).await {
                    Ok(ended) => {
                        for id in ended {
                            let _ = events.send(StoreEvent::Ended(id));
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot read which jobs ended while the job store was away")
                    }
                }
            }
        });
        lock(&store.inner.tasks).push(task);
    }
}

impl PgStore {
    /// The jobs placed on this instance that ended without running since `since_ms`.
    async fn ended_here_since(&self, since_ms: i64) -> Result<Vec<JobId>, StoreError> {
        let client = self.client().await?;
        let rows = Cached(&client)
            .query(
                "SELECT id FROM jobs WHERE placement = $1 AND finished_ms >= $2 \
                 AND status IN ('superseded', 'cancelled', 'interrupted')",
                &[&self.inner.instance, &since_ms],
            )
            .await
            .map_err(|e| self.sql(e))?;
        Ok(rows
            .iter()
            .filter_map(|row| JobId::parse(row.get(0)))
            .collect())
    }

    /// Ends what a previous run of this instance left (its running jobs and the queued ones
    /// placed on it become `interrupted`) and records this run. The name is held, so no live
    /// process runs those jobs.
    pub(super) async fn register(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(|e| self.sql(e))?;
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
    /// give their duplicate keys back; returns how many.
    async fn interrupt(
        &self,
        transaction: &Transaction<'_>,
        instance: &str,
        running_error: &str,
        queued_error: &str,
    ) -> Result<usize, StoreError> {
        let sql = |error| self.sql(error);
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
                 WHERE status = 'queued' AND placement = $1 RETURNING id",
                &[&instance, &now, &queued_error],
            )
            .await
            .map_err(sql)?;
        ids.extend(queued.iter().map(|row| row.get::<_, String>(0)));
        if !ids.is_empty() {
            Cached(transaction)
                .execute("DELETE FROM dedupe WHERE job_id = ANY($1)", &[&ids])
                .await
                .map_err(sql)?;
            Cached(transaction)
                .execute(
                    "SELECT pg_notify('hookrunner_ended', id) FROM unnest($1::text[]) AS id",
                    &[&ids],
                )
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
            let transaction = client.transaction().await.map_err(|e| self.sql(e))?;
            self.upsert_row(&transaction).await?;
            transaction.commit().await.map_err(|e| self.sql(e))?;
        }
        let reaped = self.reap(&mut client).await?;
        if reaped > 0 {
            tracing::warn!(
                count = reaped,
                "recorded the jobs of silent instances `interrupted`"
            );
        }
        let waiting: i64 = Cached(&client)
            .query_one("SELECT count(*) FROM jobs WHERE status = 'queued'", &[])
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
        self.forget_ended_commands(&client).await?;
        let _ = events.send(StoreEvent::Work);
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
        let transaction = client.transaction().await.map_err(|e| self.sql(e))?;
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
