//! The `LISTEN` connection: it holds this instance's name (a session advisory lock, released
//! the moment the process dies, even by `kill -9`), turns other instances' notifications into
//! [`StoreEvent`]s, and reconnects by itself, telling again what it may have missed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client, NoTls};

use super::schema::NAME_SPACE;
use super::Cached;
use super::{lock, now_ms, Failure, PgStore};
use crate::job::JobId;
use crate::store::{StoreError, StoreEvent};

/// The first and longest wait between two tries to reconnect the listener.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

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
        work_hint: &Arc<AtomicBool>,
    ) -> Result<Listener, StoreError> {
        let sql = |error| failure.sql(error);
        // The server probes this session too: a client cut off without a word (a partition)
        // would otherwise hold the name's lock until the server's own TCP timeout (hours), and
        // this instance, back, would find its name taken by its own old session.
        let config = super::with_settings(
            config,
            "-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=2",
        );
        let (client, mut connection) = config.connect(NoTls).await.map_err(sql)?;
        let sender = events.clone();
        let hint = Arc::clone(work_hint);
        let connection = tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(notification)) => {
                        let id = JobId::parse(notification.payload());
                        let event = match (notification.channel(), id) {
                            ("hookrunner_work", _) => {
                                hint.store(true, Ordering::SeqCst);
                                StoreEvent::Work
                            }
                            ("hookrunner_cancel", Some(id)) => StoreEvent::Cancel(id),
                            ("hookrunner_ended", Some(id)) => StoreEvent::Ended(id),
                            _ => continue,
                        };
                        let _ = sender.send(event);
                    }
                    Ok(_) => {}
                    Err(error) => {
                        // "db error" alone says nothing: the server's message is its source.
                        let reason = error
                            .as_db_error()
                            .map_or_else(|| error.to_string(), |db| db.message().to_string());
                        tracing::warn!(error = %reason, "the job store's listening connection failed");
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
                // Without its lock, the name may be taken by another process meanwhile: no new
                // work is taken until it is held again.
                if let Some(store) = PgStore::upgrade(&weak) {
                    store.set_name(Name::Lost);
                }
                let mut backoff = FIRST_BACKOFF;
                let mut told = false;
                listener = loop {
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = stop.cancelled() => return,
                    }
                    let Some(store) = PgStore::upgrade(&weak) else {
                        return;
                    };
                    let failure = &store.inner.failure;
                    match Listener::connect(
                        &config,
                        &store.inner.instance,
                        failure,
                        &events,
                        &store.inner.work_hint,
                    )
                    .await
                    {
                        Ok(listener) => break listener,
                        Err(error @ StoreError::InstanceTaken { .. }) => {
                            store.set_name(Name::Taken);
                            if !told {
                                told = true;
                                tracing::error!(%error, "this instance lost its name while its connection to the job store was away, and another process took it: this one takes no new jobs until the name is free again; stop one of the two");
                            }
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                        }
                        Err(error) => {
                            tracing::warn!(%error, "cannot listen to the job store again yet");
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                        }
                    }
                };
                tracing::info!("listening to the job store again");
                let Some(store) = PgStore::upgrade(&weak) else {
                    return;
                };
                store.set_name(Name::Held);
                store.inner.work_hint.store(true, Ordering::SeqCst);
                let _ = events.send(StoreEvent::Work);
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

/// Whether this instance holds its name, the session lock of its listening connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Name {
    Held,
    /// The listening connection was lost, and is being made again.
    Lost,
    /// Made again, it found the name held by another process.
    Taken,
}

impl PgStore {
    fn set_name(&self, name: Name) {
        *lock(&self.inner.name) = name;
    }

    /// New work (an admission, a claim, `/readyz`'s write) is refused while this instance does
    /// not hold its name: another process may have taken it, and would own the same jobs.
    pub(super) fn holding_name(&self) -> Result<(), StoreError> {
        let name = &self.inner.instance;
        match *lock(&self.inner.name) {
            Name::Held => Ok(()),
            Name::Lost => Err(StoreError::Unavailable {
                target: self.inner.failure.target.to_string(),
                source: format!("the instance `{name}` is making its listening connection again")
                    .into(),
            }),
            Name::Taken => Err(StoreError::InstanceTaken {
                name: name.clone(),
                heard: " (it took the name while this instance's connection was away)".into(),
            }),
        }
    }

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
}
