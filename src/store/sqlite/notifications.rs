//! The notification outbox (see `store::notification`).

use std::collections::HashMap;
use std::time::Duration;

use super::SqliteStore;
use crate::job::{Job, JobId};
use crate::store::{DueNotification, NewNotification, NotificationState, StoreError, Tried};

impl SqliteStore {
    pub async fn unannounced(&self, limit: usize) -> Result<Vec<Job>, StoreError> {
        todo!("{limit}")
    }

    pub async fn announce(
        &self,
        job: &JobId,
        notifications: Vec<NewNotification>,
    ) -> Result<(), StoreError> {
        todo!("{job} {notifications:?}")
    }

    pub async fn due_notifications(
        &self,
        now_ms: i64,
        limit: usize,
        hold: Duration,
    ) -> Result<Vec<DueNotification>, StoreError> {
        todo!("{now_ms} {limit} {hold:?}")
    }

    pub async fn notification_tried(
        &self,
        job: &JobId,
        position: u32,
        tried: Tried,
    ) -> Result<(), StoreError> {
        todo!("{job} {position} {tried:?}")
    }

    pub async fn notifications(
        &self,
        jobs: &[JobId],
    ) -> Result<HashMap<JobId, Vec<NotificationState>>, StoreError> {
        todo!("{}", jobs.len())
    }

    pub async fn next_notification_due(&self) -> Result<Option<i64>, StoreError> {
        todo!()
    }
}
