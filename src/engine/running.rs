//! Running: a claimed job's command runs on the server's runtime (not on an HTTP worker, so a
//! client that hangs up never stops its job), and its end is published and recorded, or, when
//! its hook retries that ending, the job goes back in line for its next attempt.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::sink::JobSink;
use super::{Inner, Live};
use crate::command::JobCommand;
use crate::job::{answer_text, now_ms, Job, JobId, Outcome, Status};
use crate::runner;
use crate::store::{Claimed, Durability, Retried};

impl Inner {
    /// Publishes a claimed job as running here and spawns its command. Its slot was reserved.
    pub(super) fn start(self: &Arc<Self>, claimed: Claimed) {
        let Claimed {
            job,
            command,
            started,
        } = claimed;
        let id = job.id.clone();
        let (sink, cancel) = {
            let mut local = self.lock();
            let live = local.live.entry(id.clone()).or_insert_with(|| Live {
                job: watch::channel(job.clone()).0,
                sink: Arc::new(JobSink::create(
                    self.store.log_writer(&id),
                    command.max_output,
                    false,
                )),
                cancel: CancellationToken::new(),
                cancelled_as: Status::Cancelled,
            });
            live.job.send_replace(job.clone());
            (Arc::clone(&live.sink), live.cancel.clone())
        };
        // A job that may run more than once marks where each attempt's output begins, its first
        // included, so every attempt's output reads the same way; a job that runs once has none.
        if job.attempts > 1 {
            sink.mark(format!("--- attempt {} ---\n", job.attempt).as_bytes());
        }
        let mut spec = command.to_spec(&|name| std::env::var(name).ok(), job.attempt);
        spec.files_dir.clone_from(&self.files_dir);
        let inner = Arc::clone(self);
        self.runtime.spawn(async move {
            // A job that runs after a restart is on disk as `running` before its command
            // starts, so a crash leaves it `interrupted`, never queued to run a second time.
            let recorded = match started {
                Some(started) => started.await,
                None => Ok(()),
            };
            let finished = match recorded {
                Ok(()) => runner::run(spec, sink.clone(), cancel).await,
                Err(error) => {
                    tracing::error!(job_id = %id, %error, "cannot record that the job started; not running it");
                    let reason = format!("the job store could not record the start: {error}");
                    runner::Finished {
                        outcome: runner::Outcome::CouldNotStart { reason },
                        duration: Duration::ZERO,
                    }
                }
            };
            inner.finish(&id, finished, &sink, &command).await;
        });
    }

    /// Records and publishes the end of a job that ran here, or puts it back in line for its
    /// next attempt, and frees its slot.
    async fn finish(
        self: &Arc<Self>,
        id: &JobId,
        finished: runner::Finished,
        sink: &JobSink,
        command: &JobCommand,
    ) {
        let live = {
            let mut local = self.lock();
            local.running = local.running.saturating_sub(1);
            local.live.remove(id)
        };
        let Some(live) = live else {
            // Not reached: a running job stays published until here.
            tracing::error!(job_id = %id, "a job ended that this instance did not publish");
            return self.job_ended.notify_waiters();
        };
        let seconds = finished.duration.as_secs_f64();
        let mut outcome = Outcome::of(finished, live.cancelled_as);
        outcome.stdout = Some(answer_text(&sink.stdout()));
        outcome.stderr = Some(answer_text(&sink.stderr()));
        let mut job: Job = live.job.borrow().clone();
        let delay = command
            .retry
            .as_ref()
            .and_then(|plan| plan.next_delay(outcome.status, job.attempt, &mut rand::thread_rng()));
        if let Some(delay) = delay {
            if self.retry(&job, &outcome, delay, command, &live).await {
                return;
            }
        }
        if let Err(error) = job.finish(outcome, now_ms()) {
            tracing::error!(job_id = %id, %error, "cannot record the job's end");
        }
        // Nobody waits for the end to reach the disk: a power loss just after it leaves the job
        // `running`, which the next start records as `interrupted`; it never runs again. But a
        // success that holds a duplicate key must reach it (with the next commit, which need
        // not come at once), or a redelivery after a power loss would run the job again.
        let status = job.status();
        let durability =
            Durability::disk_if(status == Status::Succeeded && job.dedupe_key.is_some());
        drop(self.store.finish(&job, durability));
        tracing::info!(
            job_id = %id,
            hook = job.hook,
            request_id = %job.request_id,
            status = status.as_str(),
            exit_code = job.outcome().and_then(|outcome| outcome.exit_code),
            duration_ms = job.outcome().and_then(|outcome| outcome.duration_ms),
            "job finished"
        );
        self.metrics
            .job_ended(&job.hook, status.as_str(), Some(seconds));
        live.job.send_replace(job);
        self.wake();
        self.job_ended.notify_waiters();
    }

    /// Puts a job whose run ended with `outcome` back in line for its next attempt, `delay` from
    /// now; false when the store could not, and the job ends with `outcome` instead.
    async fn retry(
        self: &Arc<Self>,
        ran: &Job,
        outcome: &Outcome,
        delay: Duration,
        command: &JobCommand,
        live: &Live,
    ) -> bool {
        let mut job = ran.clone();
        let due_ms = now_ms().saturating_add(delay.as_millis() as i64);
        if job.retry(due_ms).is_err() {
            return false;
        }
        let published = match self.store.retry(&job, command).await {
            Ok(Retried::Queued { committed }) => {
                if let Err(error) = committed.await {
                    tracing::error!(job_id = %job.id, %error, "cannot keep the job's next attempt on the disk; it waits in memory");
                }
                tracing::info!(
                    job_id = %job.id,
                    hook = job.hook,
                    request_id = %job.request_id,
                    status = outcome.status.as_str(),
                    exit_code = outcome.exit_code,
                    attempt = ran.attempt,
                    attempts = job.attempts,
                    retry_in_ms = delay.as_millis() as u64,
                    "job run failed; retrying"
                );
                self.metrics.job_retried(&job.hook, outcome.status.as_str());
                job
            }
            Ok(Retried::Superseded(ended)) => {
                tracing::info!(job_id = %job.id, hook = job.hook, "a newer job of the hook waits; the retry is superseded");
                self.metrics
                    .job_ended(&job.hook, Status::Superseded.as_str(), None);
                *ended
            }
            Ok(Retried::NotHeld) => {
                tracing::warn!(job_id = %job.id, "the job is no longer held by this instance; its next attempt is not queued");
                job
            }
            Err(error) => {
                tracing::error!(job_id = %job.id, %error, "cannot queue the job's next attempt; it ends now");
                return false;
            }
        };
        live.job.send_replace(published);
        self.wake();
        self.job_ended.notify_waiters();
        true
    }
}
