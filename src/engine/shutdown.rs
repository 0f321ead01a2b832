//! Shutdown and housekeeping: stop taking work, let running jobs end within the grace, then
//! interrupt them; and the periodic pruning of old jobs.

use std::time::Duration;

use super::Engine;
use crate::config::Retention;
use crate::job::Status;

/// The longest shutdown waits for the store to keep its last writes.
const FLUSH_DEADLINE: Duration = Duration::from_secs(10);

/// The longest shutdown waits, after the grace, for terminated commands to end (their
/// `kill_after` is usually seconds; a process that survives SIGKILL is stuck in the kernel).
const KILL_DEADLINE: Duration = Duration::from_secs(60);

impl Engine {
    /// Stops taking work, lets running jobs finish within `grace`, then terminates them (they are
    /// recorded `interrupted`) and waits for them to end. Waiting jobs stay queued in the store for
    /// the next start (or another instance).
    pub async fn shutdown(&self, grace: Duration) {
        let inner = &self.inner;
        inner.stopping.cancel();
        let deadline = tokio::time::Instant::now() + grace;
        let mut interrupted = false;
        let kill_deadline = deadline + KILL_DEADLINE;
        loop {
            let ended = inner.job_ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if inner.lock().running == 0 {
                break;
            }
            if !interrupted && tokio::time::Instant::now() >= deadline {
                interrupted = true;
                let mut local = inner.lock();
                for live in local
                    .live
                    .values_mut()
                    .filter(|live| live.job.borrow().status() == Status::Running)
                {
                    live.cancelled_as = Status::Interrupted;
                    live.cancel.cancel();
                }
                tracing::warn!("shutdown grace is over; terminating the jobs still running");
            }
            if interrupted {
                // A terminated command ends within its `kill_after`; its end is recorded here.
                if tokio::time::timeout_at(kill_deadline, ended).await.is_err() {
                    tracing::error!(
                        "jobs still running {}s after they were terminated; stopping without them (the next start records them `interrupted`)",
                        KILL_DEADLINE.as_secs()
                    );
                    break;
                }
            } else {
                let _ = tokio::time::timeout_at(deadline, ended).await;
            }
        }
        match tokio::time::timeout(FLUSH_DEADLINE, inner.store.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::error!(%error, "the job store could not commit its last writes")
            }
            Err(_) => tracing::error!(
                "the job store did not commit its last writes within {}s",
                FLUSH_DEADLINE.as_secs()
            ),
        }
        let _ = tokio::time::timeout(FLUSH_DEADLINE, inner.store.close()).await;
    }

    /// Deletes old finished jobs and their logs, as `retention` says, now and every `every`.
    pub fn prune_every(&self, retention: Retention, every: Duration) {
        let engine = self.clone();
        self.inner.runtime.spawn(async move {
            loop {
                match engine
                    .inner
                    .store
                    .prune(retention.max_age, retention.max_jobs)
                    .await
                {
                    Ok(0) => {}
                    Ok(count) => tracing::info!(count, "pruned old jobs"),
                    Err(error) => tracing::error!(%error, "cannot prune old jobs"),
                }
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    () = engine.inner.stopping.cancelled() => break,
                }
            }
        });
    }
}
