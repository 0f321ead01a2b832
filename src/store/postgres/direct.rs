//! Admission straight to running: a job this instance has a free slot for, in a lane that lets
//! it start now, is inserted `running` here by the `starter`, with the admissions that arrive
//! with it, in one statement and no claim after it. This is the common case (an unlimited
//! `parallel` hook) and costs a share of one round trip where a queued admission and its claim
//! cost about a dozen.

use super::starter::Row;
use super::{lock, PgStore};
use crate::config::Concurrency;
use crate::job::Job;
use crate::store::{Admission, Claimed, Committed, Durability, NewJob, StoreError};

/// Whether a job of this concurrency may start at its admission: only when its lane has no
/// limit, so nothing across the cluster needs counting, and it needs no approval first.
pub(super) fn may_start_at_once(new: &NewJob) -> bool {
    new.start_here
        && new.concurrency == Concurrency::Parallel { limit: None }
        && new.approval_until_ms.is_none()
}

impl PgStore {
    /// Admits the job running here, with the next batch of the starter; `None` when the lane or
    /// the key says no, and the full admission must decide.
    ///
    /// A durable job's row is on the disk once the statement is answered: it goes through a
    /// connection that commits so. If the answer is lost, the job may be
    /// recorded running here without this instance knowing: it is `unsettled`, and the next
    /// claim hands it over (or ends it, if its command was not stored), as for a claim.
    pub(super) async fn admit_running(
        &self,
        new: &NewJob,
        lane: &str,
        placed: &Option<String>,
        stored: &str,
    ) -> Result<Option<Admission>, StoreError> {
        let job = &new.job;
        let instance = &self.inner.instance;
        let durable = new.command.run_after_restart;
        let row = Row {
            id: job.id.to_string(),
            hook: job.hook.clone(),
            request_id: job.request_id.clone(),
            dedupe_key: job.dedupe_key.clone(),
            created_ms: job.created_ms,
            attempt: i32::try_from(job.attempt).unwrap_or(i32::MAX),
            attempts: i32::try_from(job.attempts).unwrap_or(i32::MAX),
            placement: placed.clone(),
            lane: lane.to_string(),
            command: stored.to_string(),
            notify: new.notify,
        };
        let started = self
            .inner
            .starter
            .start_running(row, Durability::disk_if(durable))
            .await;
        let started_ms = match started {
            Ok(Some(started_ms)) => started_ms,
            Ok(None) => return Ok(None),
            Err(error) => {
                if matches!(error, StoreError::Unavailable { .. }) {
                    lock(&self.inner.unsettled).insert(job.id.clone());
                }
                return Err(error);
            }
        };
        self.committed(1, durable);
        lock(&self.inner.running).insert(job.id.clone());
        let mut running: Job = job.clone();
        if let Err(error) = running.start(instance, started_ms) {
            // Not reached: an admitted job is queued.
            tracing::error!(%error, "a job admitted running was not queued");
        }
        Ok(Some(Admission::Accepted {
            committed: Committed::done(),
            superseded: Vec::new(),
            cancel: Vec::new(),
            started: Some(Box::new(Claimed {
                job: running,
                command: new.command.clone(),
                started: durable.then(Committed::done),
            })),
        }))
    }
}
