//! Approvals (SPEC §15) on the embedded backend: a job awaiting approval waits in the line's
//! `awaiting`, outside its lane, until `approve` puts it in its lane (with the lane code an
//! admission uses), or `reject` or `expire_approvals` end it. Each is decided under the line's
//! mutex, so it is atomic with admissions and claims.

use super::rows::JobUpdate;
use super::{SqliteStore, StoreError};
use crate::config::Concurrency;
use crate::job::{JobId, Status};
use crate::store::{Approval, Decided, Durability, Expiry};

impl SqliteStore {
    pub async fn approve(
        &self,
        id: &JobId,
        concurrency: Concurrency,
    ) -> Result<Approval, StoreError> {
        let approved = {
            let mut line = self.line();
            match line.awaiting.get(id).map(|(job, _)| job.hook.clone()) {
                None => None,
                Some(hook) => {
                    let (superseded, cancel) =
                        match self.enter_lane(&mut line, &hook, concurrency, id) {
                            Ok(entered) => entered,
                            Err(waiting) => return Ok(Approval::QueueFull { waiting }),
                        };
                    line.awaiting.remove(id).map(|(mut job, command)| {
                        // Awaiting, so approving cannot fail.
                        let _ = job.approve();
                        // On the disk before the answer: an approved job runs after a restart,
                        // like an admitted one.
                        let committed = self.rows.update(id, JobUpdate::Approved, Durability::Disk);
                        line.waiting.insert(id.clone(), (job.clone(), command));
                        self.supersede(&mut line, &superseded);
                        let approval = Approval::Approved {
                            job,
                            superseded,
                            cancel,
                        };
                        (committed, approval)
                    })
                }
            }
        };
        if let Some((committed, approval)) = approved {
            committed.await?;
            return Ok(approval);
        }
        Ok(match self.get(id).await? {
            Some(job) => Approval::NotAwaiting(job),
            None => Approval::NotFound,
        })
    }

    pub async fn reject(&self, id: &JobId) -> Result<Decided, StoreError> {
        let ended = {
            let mut line = self.line();
            if line.awaiting.contains_key(id) {
                self.end_waiting(&mut line, id, Status::Rejected)
            } else {
                None
            }
        };
        if let Some(job) = ended {
            self.rows.flush().await?;
            return Ok(Decided::Ended(job));
        }
        Ok(match self.get(id).await? {
            Some(job) => Decided::NotAwaiting(job),
            None => Decided::NotFound,
        })
    }

    pub async fn expire_approvals(&self, now_ms: i64) -> Result<Expiry, StoreError> {
        let mut expiry = Expiry::default();
        {
            let mut line = self.line();
            let due: Vec<JobId> = line
                .awaiting
                .iter()
                .filter(|(_, (job, _))| {
                    job.approval_until_ms().is_some_and(|until| until <= now_ms)
                })
                .map(|(id, _)| id.clone())
                .collect();
            for id in due {
                if let Some(job) = self.end_waiting(&mut line, &id, Status::Expired) {
                    expiry.expired.push(job);
                }
            }
            expiry.next_ms = line
                .awaiting
                .values()
                .filter_map(|(job, _)| job.approval_until_ms())
                .min();
        }
        if !expiry.expired.is_empty() {
            self.rows.flush().await?;
        }
        expiry.expired.sort_by_key(|job| job.created_ms);
        Ok(expiry)
    }
}
