//! Delivers notifications (SPEC §13), off the request path: one task per server announces the
//! ends of jobs whose hook has a `notify` list (it builds their notifications, through
//! [`crate::notify::plan`], and keeps them in the store's outbox), and tries the ones that are
//! due, at most [`MAX_IN_FLIGHT`] at a time, each try bounded in time. What a try decides
//! ([`crate::notify::settle`]) is kept in the store before the next try, so a crash or a restart
//! loses nothing: the worst it does is send a notification once more (at least once, with the
//! same `webhook-id`).
//!
//! The store's outbox is shared by every instance on one PostgreSQL database: whichever
//! instance looks first announces an end, and each try is held by one instance.

mod send;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};

use crate::config::Config;
use crate::engine::Engine;
use crate::job::{now_ms, Job};
use crate::metrics::Metrics;
use crate::notify::plan;
use crate::notify::settle::{settle, Answer};
use crate::store::{DueNotification, Store, StoreError, Tried};

pub use send::{describe_error, Sender};

/// Tries under way at most, per instance.
pub const MAX_IN_FLIGHT: usize = 8;
/// How long a try is held by its instance: longer than any try lasts (a `command` target's
/// timeout and kill grace), so that only a dead instance's try is taken over.
pub const HOLD: Duration = Duration::from_secs(300);
/// How often the store is looked at without a word of work: another instance's job ends and a
/// pending notification whose hold ended are found this way.
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// The shortest time between two looks that a job's end starts.
const MIN_GAP: Duration = Duration::from_millis(50);
/// Job ends announced per batch…
const ANNOUNCE_BATCH: usize = 32;
/// …and batches per look at the store.
const ANNOUNCE_ROUNDS: usize = 4;
/// How much of a job's log a `slack` notification reads: its end, of which it shows the last
/// lines.
const OUTPUT_TAIL: usize = 64 << 10;

/// The config now serving (a reload swaps it).
pub type CurrentConfig = Arc<dyn Fn() -> Arc<Config> + Send + Sync>;

/// The delivery task and what its tries share.
#[derive(Clone)]
pub struct Deliverer {
    engine: Engine,
    config: CurrentConfig,
    metrics: Arc<Metrics>,
    sender: Sender,
    slots: Arc<Semaphore>,
    /// Wakes the task when a try ends (a slot is free).
    settled: Arc<Notify>,
}

impl Deliverer {
    pub fn new(engine: Engine, config: CurrentConfig, metrics: Arc<Metrics>) -> Deliverer {
        Deliverer {
            engine,
            config,
            metrics,
            sender: Sender::new(),
            slots: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            settled: Arc::new(Notify::new()),
        }
    }

    fn store(&self) -> &Store {
        self.engine.store()
    }

    /// Announces and delivers until the task is aborted. A store that cannot be reached is
    /// said once, when it first fails, and once when it is back.
    pub async fn run(self) {
        let mut failing = false;
        loop {
            let ended = self.engine.job_ended();
            let settled = self.settled.notified();
            tokio::pin!(ended, settled);
            ended.as_mut().enable();
            settled.as_mut().enable();
            let looked = tokio::time::Instant::now();
            let next = self.look().await;
            match (&next, failing) {
                (Err(error), false) => {
                    tracing::warn!(%error, "cannot read the notifications to send; trying again every second");
                }
                (Ok(_), true) => tracing::info!("notifications are read again"),
                _ => {}
            }
            failing = next.is_err();
            // A try due now that found no free slot waits for one (`settled`); otherwise the
            // next due time, at most `LOOK_EVERY` away.
            let wait = match next {
                Ok(Some(due_ms)) if self.slots.available_permits() > 0 => Duration::from_millis(
                    u64::try_from(due_ms.saturating_sub(now_ms())).unwrap_or(0),
                )
                .clamp(MIN_GAP, LOOK_EVERY),
                Ok(_) | Err(_) => LOOK_EVERY,
            };
            // A job's end wakes the task only where some hook notifies, and at most once per
            // `MIN_GAP`, so that a busy server without notifications pays nothing for them.
            let notifying = {
                let config = (self.config)();
                !config.server.notify.is_empty()
                    || config.hooks.iter().any(|hook| !hook.notify.is_empty())
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = ended, if notifying => {
                    tokio::time::sleep_until(looked + MIN_GAP).await;
                }
                () = settled => {}
            }
        }
    }

    /// Announces what ended (at most [`ANNOUNCE_ROUNDS`] batches, so that tries are handed out
    /// while many jobs end), starts the tries that are due and that there is room for, and says
    /// when the next is due.
    async fn look(&self) -> Result<Option<i64>, StoreError> {
        let mut announced = Ok(());
        for _ in 0..ANNOUNCE_ROUNDS {
            match self.announce().await {
                Ok(count) if count == ANNOUNCE_BATCH => {}
                Ok(_) => break,
                Err(error) => {
                    announced = Err(error);
                    break;
                }
            }
        }
        let next = self.store().next_notification_due().await?;
        let free = self.slots.available_permits();
        if free == 0 || next.is_none_or(|due_ms| due_ms > now_ms()) {
            return announced.map(|()| next);
        }
        for due in self.store().due_notifications(now_ms(), free, HOLD).await? {
            let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() else {
                break;
            };
            let deliverer = self.clone();
            tokio::spawn(async move {
                deliverer.try_once(due).await;
                drop(slot);
                deliverer.settled.notify_one();
            });
        }
        let next = self.store().next_notification_due().await?;
        announced.map(|()| next)
    }

    /// Builds and keeps the notifications of up to [`ANNOUNCE_BATCH`] job ends; returns how
    /// many ends it announced. The ends are kept together (concurrent writes, which the store
    /// commits as one batch where it can), not one commit after another.
    async fn announce(&self) -> Result<usize, StoreError> {
        let jobs = self.store().unannounced(ANNOUNCE_BATCH).await?;
        let config = (self.config)();
        let mut planned = Vec::with_capacity(jobs.len());
        for job in &jobs {
            // A hook no longer in the config announces nothing: its entries are gone too.
            let notifications = match config.hook(&job.hook) {
                None => Vec::new(),
                Some(hook) => {
                    let output = if plan::needs_output(job, &hook.notify) {
                        self.log_tail(job).await
                    } else {
                        Vec::new()
                    };
                    plan::plan(
                        job,
                        &hook.notify,
                        hook.response.include_output,
                        &output,
                        config.server.public_url.as_deref(),
                    )
                }
            };
            planned.push(self.store().announce(job, notifications));
        }
        for kept in futures_util::future::join_all(planned).await {
            kept?;
        }
        Ok(jobs.len())
    }

    /// The end of a job's log, at most [`OUTPUT_TAIL`] bytes. A log that cannot be read gives
    /// an empty tail: the message goes without it rather than not at all.
    async fn log_tail(&self, job: &Job) -> Vec<u8> {
        match self.store().read_log_tail(&job.id, OUTPUT_TAIL).await {
            Ok((tail, _)) => tail,
            Err(error) => {
                tracing::warn!(job_id = %job.id, %error, "cannot read the job's log for its notification; it is sent without the output");
                Vec::new()
            }
        }
    }

    /// Makes one try of `due` and keeps what it decided.
    async fn try_once(&self, due: DueNotification) {
        let config = (self.config)();
        let entry = config.hook(&due.hook).and_then(|hook| {
            hook.notify
                .iter()
                .find(|entry| plan::route(entry) == due.route)
        });
        let (answer, backoff) = match entry {
            _ if now_ms() > due.expires_ms => (
                Answer::Impossible {
                    error: "not sent: its `max_age` passed before it could be tried (the server was stopped or busy)".into(),
                },
                None,
            ),
            Some(entry) => (
                self.sender.send(&entry.target, &due).await,
                Some(entry.backoff),
            ),
            None => {
                let error = match config.hook(&due.hook) {
                    None => format!("not sent: hook `{}` is no longer in the config", due.hook),
                    Some(_) => "not sent: a reload changed or removed the `notify` entry that made it".to_string(),
                };
                (Answer::Impossible { error }, None)
            }
        };
        let backoff = backoff.unwrap_or(crate::backoff::Backoff::new(HOLD, HOLD));
        let tried = settle(
            answer,
            due.attempts,
            now_ms(),
            due.expires_ms,
            &backoff,
            &mut rand::thread_rng(),
        );
        let result = match &tried {
            Tried::Delivered => {
                tracing::info!(job_id = %due.job, hook = due.hook, target = due.target, attempts = due.attempts, "notification delivered");
                "delivered"
            }
            Tried::Retry { error, .. } => {
                tracing::debug!(job_id = %due.job, hook = due.hook, target = due.target, attempts = due.attempts, error, "notification not delivered yet");
                "retried"
            }
            Tried::Failed { error } => {
                tracing::warn!(job_id = %due.job, hook = due.hook, target = due.target, attempts = due.attempts, error, "notification given up");
                "failed"
            }
        };
        self.metrics.notification(&due.target, result);
        if let Err(error) = self
            .store()
            .notification_tried(&due.job, due.position, tried)
            .await
        {
            tracing::warn!(job_id = %due.job, %error, "cannot keep what became of a notification's try; it is tried again once its hold ends");
        }
    }
}
