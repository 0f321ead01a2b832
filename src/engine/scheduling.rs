//! Scheduling: this instance claims from the store as many jobs as it has room for, whenever
//! room or work may have appeared (an admission, a job's end, another instance's word).

use std::sync::Arc;

use futures_util::FutureExt as _;

use super::Inner;

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

    /// Claims and starts jobs until a look finds no more room or work. Slots are reserved before
    /// the claim, so `max_jobs` holds while the claim is in flight.
    async fn schedule(self: Arc<Self>) {
        loop {
            let reserved = {
                let mut local = self.lock();
                local.again = false;
                let free = if self.stopping.is_cancelled() {
                    0
                } else {
                    self.max_jobs.saturating_sub(local.running)
                };
                local.running += free;
                free
            };
            if reserved > 0 {
                let claimed = match self.store.claim(reserved).await {
                    Ok(claimed) => claimed,
                    Err(error) => {
                        tracing::error!(%error, "cannot claim jobs from the store; trying again at the next wake-up");
                        Vec::new()
                    }
                };
                self.lock().running -= reserved - claimed.len();
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
