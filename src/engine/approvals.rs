//! Approvals (SPEC §15): a job of an `approval` hook waits in the store, `awaiting_approval`,
//! until an admin approves it (it then enters its hook's lane as a new trigger would at that
//! moment), rejects it, or its time runs out. Every instance runs the expiry timer; the store
//! makes each job expire once, so the wait survives restarts and any live instance ends it.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use super::{Engine, Inner};
use crate::config::Concurrency;
use crate::job::{now_ms, Job, JobId};
use crate::store::{Approval, Decided, StoreError};

/// The longest the expiry timer sleeps: a wait that another instance admitted (and no word of
/// reached this one) expires at most this late.
const LOOK_EVERY: Duration = Duration::from_secs(10);

impl Engine {
    /// Approves a waiting job under its hook's `concurrency` (the store applies the lane's rules
    /// as at an admission); the jobs it supersedes or asks to stop learn of it here. A job whose
    /// wait is over is expired instead.
    pub async fn approve(
        &self,
        id: &JobId,
        concurrency: Concurrency,
    ) -> Result<Approval, StoreError> {
        let inner = &self.inner;
        // A wait whose time is up ends `expired` first, even if the timer has not come to it
        // yet (it may be another instance's, up to `LOOK_EVERY` late): it is never approved.
        for job in inner.store.expire_approvals(now_ms()).await?.expired {
            inner.ended_unrun(&job);
        }
        let approval = inner.store.approve(id, concurrency).await?;
        if let Approval::Approved {
            job,
            superseded,
            cancel,
        } = &approval
        {
            for old in superseded {
                self.superseded(&job.hook, old);
            }
            let me = inner.store.instance();
            for (running, _) in cancel.iter().filter(|(_, instance)| instance == me) {
                inner.cancel_running(running);
            }
            inner.wake();
        }
        Ok(approval)
    }

    /// Rejects a waiting job: it ends `rejected` and never runs.
    pub async fn reject(&self, id: &JobId) -> Result<Decided, StoreError> {
        let decided = self.inner.store.reject(id).await?;
        if let Decided::Ended(job) = &decided {
            self.inner.ended_unrun(job);
        }
        Ok(decided)
    }
}

impl Inner {
    /// A job the store ended before it ran (rejected, expired): counted, and the tasks that
    /// wait for ends (notifications) are woken.
    pub(super) fn ended_unrun(&self, job: &Job) {
        self.metrics
            .job_ended(&job.hook, job.status().as_str(), None);
        self.job_ended.notify_waiters();
    }
}

/// Ends the waits whose time is up: at the earliest one the last look saw, when `admitted` says
/// a new wait began here, and every [`LOOK_EVERY`]. The task ends with the engine.
pub(super) fn spawn_expiry(inner: &Arc<Inner>, admitted: Arc<Notify>) {
    let weak: Weak<Inner> = Arc::downgrade(inner);
    let stopping = inner.stopping.clone();
    inner.runtime.spawn(async move {
        let mut failing = false;
        loop {
            let woken = admitted.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let wait = {
                let Some(inner) = weak.upgrade() else { return };
                match inner.store.expire_approvals(now_ms()).await {
                    Ok(expiry) => {
                        if failing {
                            tracing::info!("waits for approval are checked again");
                            failing = false;
                        }
                        for job in &expiry.expired {
                            tracing::info!(job_id = %job.id, hook = %job.hook, "a job waited for approval past its `timeout` and expired");
                            inner.ended_unrun(job);
                        }
                        expiry.next_ms.map_or(LOOK_EVERY, |at_ms| {
                            let ms = u64::try_from(at_ms.saturating_sub(now_ms())).unwrap_or(0);
                            Duration::from_millis(ms).min(LOOK_EVERY)
                        })
                    }
                    Err(error) => {
                        if !failing {
                            tracing::warn!(%error, "cannot expire the jobs whose wait for approval is over; trying again every 10 seconds");
                            failing = true;
                        }
                        LOOK_EVERY
                    }
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = woken => {}
                () = stopping.cancelled() => return,
            }
        }
    });
}
