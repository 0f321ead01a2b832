//! Scheduling: this instance claims from the store as many jobs as it has room for, whenever
//! room or work may have appeared (an admission, a job's end, another instance's word, or the
//! time a retry waits for).

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::FutureExt as _;
use tokio::sync::watch;

use super::Inner;
use crate::job::now_ms;

/// Wakes the scheduler when the first job waiting for a retry becomes due: the time is set by
/// each look at the store (`None`: none waits), and a new time replaces the old one. The task
/// ends with the engine.
pub(super) fn spawn_timer(inner: &Arc<Inner>, mut due: watch::Receiver<Option<i64>>) {
    let weak: Weak<Inner> = Arc::downgrade(inner);
    inner.runtime.spawn(async move {
        loop {
            let wait = due
                .borrow_and_update()
                .map(|at_ms| Duration::from_millis(at_ms.saturating_sub(now_ms()).max(0) as u64));
            let changed = match wait {
                None => due.changed().await,
                Some(wait) => tokio::select! {
                    changed = due.changed() => changed,
                    () = tokio::time::sleep(wait) => {
                        let Some(inner) = weak.upgrade() else { return };
                        // Each look sets the next time again; until then, none.
                        inner.retry_due.send_replace(None);
                        inner.wake();
                        Ok(())
                    }
                },
            };
            if changed.is_err() {
                return;
            }
        }
    });
}

impl Inner {
    /// Makes sure a claim runs soon: starts one, or asks the one in progress to look again, so
    /// a job admitted while a claim runs is never left waiting.
    pub(super) fn wake(self: &Arc<Self>) {
        {
            let mut local = self.lock();
            if local.scheduling {
                local.again = true;
                return;
            }
            local.scheduling = true;
        }
        let inner = Arc::clone(self);
        let mut claim = Box::pin(async move { inner.schedule().await });
        // A claim that needs no wait (the SQLite store's, decided in memory) is done here and
        // now; one that waits for a database goes on in a task of its own.
        if (&mut claim).now_or_never().is_none() {
            self.runtime.spawn(claim);
        }
    }

    /// Holds one free slot for a job about to be admitted, which the store may start at once;
    /// `None` when none is free (or the instance is stopping).
    pub(super) fn hold_slot(self: &Arc<Self>) -> Option<HeldSlot> {
        let mut local = self.lock();
        if self.stopping.is_cancelled() || local.running >= self.max_jobs {
            return None;
        }
        local.running += 1;
        Some(HeldSlot(Some(Arc::clone(self))))
    }
}

/// A slot held for an admission. Dropped unused (the store did not start the job, or the
/// admission itself was dropped half-way), it is given back, and work is looked for it: a claim
/// that ran meanwhile counted it taken.
pub(super) struct HeldSlot(Option<Arc<Inner>>);

impl HeldSlot {
    /// The job started in it: the slot is the job's now, given back when it ends.
    pub(super) fn used(mut self) {
        self.0 = None;
    }
}

impl Drop for HeldSlot {
    fn drop(&mut self) {
        if let Some(inner) = self.0.take() {
            {
                let mut local = inner.lock();
                local.running = local.running.saturating_sub(1);
            }
            inner.wake();
        }
    }
}

impl Inner {
    /// Claims and starts jobs until a look finds no more room or work. Slots are reserved before
    /// the claim, so `max_jobs` holds while the claim is in flight.
    async fn schedule(self: Arc<Self>) {
        loop {
            let room = {
                let mut local = self.lock();
                local.again = false;
                if self.stopping.is_cancelled() {
                    0
                } else {
                    self.max_jobs.saturating_sub(local.running)
                }
            };
            let work = if room == 0 {
                0
            } else {
                match self.store.work_waiting(room).await {
                    Ok(waiting) => {
                        self.retry_due.send_if_modified(|due| {
                            let changed = *due != waiting.next_due_ms;
                            *due = waiting.next_due_ms;
                            changed
                        });
                        waiting.now
                    }
                    Err(error) => {
                        tracing::error!(%error, "cannot look for jobs in the store; trying again at the next wake-up");
                        0
                    }
                }
            };
            // Slots are held for the work found only: the others stay free for admissions,
            // which may start their jobs at once.
            let reserved = {
                let mut local = self.lock();
                let free = self.max_jobs.saturating_sub(local.running).min(work);
                local.running += free;
                free
            };
            if reserved < work {
                // Admissions took the room meanwhile: what was found is looked for again.
                self.store.look_again();
            }
            if reserved > 0 {
                let claimed = match self.store.claim(reserved).await {
                    Ok(claimed) => claimed,
                    Err(error) => {
                        tracing::error!(%error, "cannot claim jobs from the store; trying again at the next wake-up");
                        Vec::new()
                    }
                };
                {
                    // A claim hands over at most what it was asked for; were it more, the count
                    // still holds.
                    let mut local = self.lock();
                    local.running = (local.running + claimed.len()).saturating_sub(reserved);
                }
                for claimed in claimed {
                    self.start(claimed);
                }
            }
            let mut local = self.lock();
            if !local.again {
                local.scheduling = false;
                return;
            }
        }
    }
}
