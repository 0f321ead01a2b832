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

use crate::config::{Config, Notifications};
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
/// Job ends announced per look at the store.
const ANNOUNCE_BATCH: usize = 32;
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
            let wait = match next {
                Ok(Some(due_ms)) => Duration::from_millis(
                    u64::try_from(due_ms.saturating_sub(now_ms())).unwrap_or(0),
                )
                .min(LOOK_EVERY),
                Ok(None) | Err(_) => LOOK_EVERY,
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

    /// Announces what ended, starts the tries that are due and that there is room for, and
    /// says when the next is due.
    async fn look(&self) -> Result<Option<i64>, StoreError> {
        while self.announce().await? == ANNOUNCE_BATCH {}
        let free = self.slots.available_permits();
        if free > 0 {
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
        }
        self.store().next_notification_due().await
    }

    /// Builds and keeps the notifications of up to [`ANNOUNCE_BATCH`] job ends; returns how
    /// many ends it announced.
    async fn announce(&self) -> Result<usize, StoreError> {
        let jobs = self.store().unannounced(ANNOUNCE_BATCH).await?;
        let config = (self.config)();
        for job in &jobs {
            let (entries, include_output) = entries_of(&config, &job.hook);
            let output = if plan::needs_output(job, &entries) {
                self.log_tail(job).await?
            } else {
                Vec::new()
            };
            let notifications = plan::plan(
                job,
                &entries,
                include_output,
                &output,
                config.server.public_url.as_deref(),
            );
            self.store().announce(&job.id, notifications).await?;
        }
        Ok(jobs.len())
    }

    /// The end of a job's log, at most [`OUTPUT_TAIL`] bytes.
    async fn log_tail(&self, job: &Job) -> Result<Vec<u8>, StoreError> {
        let mut tail = Vec::new();
        let mut offset = 0u64;
        loop {
            let piece = self.store().read_log(&job.id, offset).await?;
            if piece.is_empty() {
                return Ok(tail);
            }
            offset += piece.len() as u64;
            tail.extend_from_slice(&piece);
            if tail.len() > OUTPUT_TAIL {
                tail.drain(..tail.len() - OUTPUT_TAIL);
            }
        }
    }

    /// Makes one try of `due` and keeps what it decided.
    async fn try_once(&self, due: DueNotification) {
        let config = (self.config)();
        let (entries, _) = entries_of(&config, &due.hook);
        let entry = entries
            .get(due.position as usize)
            .filter(|entry| entry.target.kind() == due.target);
        let (answer, backoff) = match entry {
            Some(entry) => (self.sender.send(&entry.target, &due).await, entry.backoff),
            None => (
                Answer::Impossible {
                    error: format!(
                        "the config no longer has this notification: entry {} of hook `{}`'s `notify` is not a `{}` target any more",
                        due.position + 1,
                        due.hook,
                        due.target
                    ),
                },
                crate::backoff::Backoff::new(HOLD, HOLD),
            ),
        };
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

/// The `notify` list of `hook` as the config has it now (the server's for a hook no longer in
/// it), and whether its job bodies show their output.
fn entries_of(config: &Config, hook: &str) -> (Notifications, bool) {
    match config.hook(hook) {
        Some(hook) => (Arc::clone(&hook.notify), hook.response.include_output),
        None => (Arc::clone(&config.server.notify), false),
    }
}
