//! Admission straight to running: a job this instance has a free slot for, in a lane that lets
//! it start now, is inserted `running` here in one statement, with no transaction around it and
//! no claim after it. This is the common case (an unlimited `parallel` hook with nothing waiting)
//! and costs one round trip where a queued admission and its claim cost about a dozen.

use super::{lock, now_ms, Cached, PgStore};
use crate::config::Concurrency;
use crate::job::Job;
use crate::store::{Admission, Claimed, Committed, Durability, NewJob, StoreError};

/// Inserts the job `running` on this instance, with its duplicate key, when its lane is a known
/// unlimited `parallel` lane and the key is free. Otherwise nothing is written and the statement
/// says so by inserting no row: a lane that is new or changed mode, and a key that is taken, are
/// decided by the full admission.
///
/// Jobs of the lane may be waiting: in an unlimited lane they wait only for an instance with
/// room, and this one has room. They are not passed over for long: a slot that frees up goes to
/// this instance's claim, oldest first, before any admission can hold it.
///
/// Reading the lane without locking its row is what every `parallel` admission does: only the
/// modes whose limits count waiting or running jobs lock it, and those never come here.
const INSERT_RUNNING: &str = "\
    WITH open_lane AS ( \
        SELECT 1 FROM lanes WHERE lane = $9 AND mode = 'parallel' AND parallel_limit IS NULL \
    ), key AS ( \
        INSERT INTO dedupe (hook, key, job_id) \
        SELECT $2, $4, $1 FROM open_lane WHERE $4::text IS NOT NULL \
        ON CONFLICT DO NOTHING RETURNING job_id \
    ) \
    INSERT INTO jobs (id, hook, request_id, status, dedupe_key, created_ms, attempt, attempts, \
                      placement, lane, command, instance, started_ms) \
    SELECT $1, $2, $3, 'running', $4, $5, $6, $7, $8, $9, $10, $11, $12 FROM open_lane \
    WHERE $4::text IS NULL OR EXISTS (SELECT 1 FROM key)";

/// Whether a job of this concurrency may start at its admission: only when its lane has no
/// limit, so nothing across the cluster needs counting.
pub(super) fn may_start_at_once(new: &NewJob) -> bool {
    new.start_here && new.concurrency == Concurrency::Parallel { limit: None }
}

impl PgStore {
    /// Admits the job running here, in one statement that commits on its own; `None` when the
    /// lane or the key says no, and the full admission must decide.
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
        let started_ms = now_ms();
        let durable = new.command.run_after_restart;
        let client = self.client_for(Durability::disk_if(durable)).await?;
        let inserted = Cached(&client)
            .execute(
                INSERT_RUNNING,
                &[
                    &job.id.as_str(),
                    &job.hook,
                    &job.request_id,
                    &job.dedupe_key,
                    &job.created_ms,
                    &i32::try_from(job.attempt).unwrap_or(i32::MAX),
                    &i32::try_from(job.attempts).unwrap_or(i32::MAX),
                    placed,
                    &lane,
                    &stored,
                    instance,
                    &started_ms,
                ],
            )
            .await;
        let inserted = match inserted {
            Ok(inserted) => inserted,
            Err(error) => {
                let error = self.sql(error);
                if matches!(error, StoreError::Unavailable { .. }) {
                    lock(&self.inner.unsettled).insert(job.id.clone());
                }
                return Err(error);
            }
        };
        if inserted == 0 {
            return Ok(None);
        }
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
