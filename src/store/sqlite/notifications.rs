//! The notification outbox (see `store::notification`): its statements run on the writer thread
//! like every other read and write, so they keep the order of the writes around them.

use std::collections::HashMap;
use std::time::Duration;

use super::rows::Rows;
use super::writer::{Command, Read, Write};
use super::{JobRecord, SqliteStore};
use crate::job::{Job, JobId, Status};
use crate::store::{DueNotification, NewNotification, NotificationState, StoreError, Tried};

impl SqliteStore {
    pub async fn unannounced(&self, limit: usize) -> Result<Vec<Job>, StoreError> {
        let records = self.rows.unannounced(limit).await?;
        Ok(records.into_iter().map(JobRecord::into_job).collect())
    }

    pub async fn announce(
        &self,
        job: &Job,
        notifications: Vec<NewNotification>,
    ) -> Result<(), StoreError> {
        let wait = job.status() == Status::AwaitingApproval;
        self.rows.announce(&job.id, notifications, wait).await
    }

    pub async fn due_notifications(
        &self,
        now_ms: i64,
        limit: usize,
        hold: Duration,
    ) -> Result<Vec<DueNotification>, StoreError> {
        let hold_ms = i64::try_from(hold.as_millis()).unwrap_or(i64::MAX);
        self.rows
            .take_due(now_ms, limit, now_ms.saturating_add(hold_ms))
            .await
    }

    pub async fn notification_tried(
        &self,
        job: &JobId,
        position: u32,
        tried: Tried,
    ) -> Result<(), StoreError> {
        self.rows.notification_tried(job, position, tried).await
    }

    pub async fn notifications(
        &self,
        jobs: &[JobId],
    ) -> Result<HashMap<JobId, Vec<NotificationState>>, StoreError> {
        Ok(self.rows.notifications(jobs).await?.into_iter().collect())
    }

    pub async fn next_notification_due(&self) -> Result<Option<i64>, StoreError> {
        self.rows.next_notification_due().await
    }
}

impl Rows {
    /// The ended jobs still marked to be announced and the jobs awaiting approval whose wait is,
    /// oldest first, at most `limit`.
    pub async fn unannounced(&self, limit: usize) -> Result<Vec<JobRecord>, StoreError> {
        self.ask(|reply| Command::Read(Read::Unannounced { limit, reply }))
            .await
    }

    /// Keeps the job's notifications (but for the positions it has already) and clears its
    /// marks (with `wait`, only the mark of its wait), in one write on the disk.
    /// [`StoreError::UnknownJob`] if the job is not kept.
    pub async fn announce(
        &self,
        job: &JobId,
        notifications: Vec<NewNotification>,
        wait: bool,
    ) -> Result<(), StoreError> {
        let job = job.clone();
        self.ask(|reply| {
            Command::Write(Write::Announce {
                job,
                notifications,
                wait,
                reply,
            })
        })
        .await
    }

    /// Hands out at most `limit` pending notifications due at `now_ms`, oldest due first, each
    /// counted as tried once more and held until `held_until_ms`.
    pub async fn take_due(
        &self,
        now_ms: i64,
        limit: usize,
        held_until_ms: i64,
    ) -> Result<Vec<DueNotification>, StoreError> {
        self.ask(|reply| {
            Command::Write(Write::TakeDue {
                now_ms,
                limit,
                held_until_ms,
                reply,
            })
        })
        .await
    }

    /// Keeps what became of a try, on the disk, and lets go of the notification.
    pub async fn notification_tried(
        &self,
        job: &JobId,
        position: u32,
        tried: Tried,
    ) -> Result<(), StoreError> {
        let job = job.clone();
        self.ask(|reply| {
            Command::Write(Write::Tried {
                job,
                position,
                tried,
                reply,
            })
        })
        .await
    }

    /// The notifications of each of `jobs` that has any, by position.
    pub async fn notifications(
        &self,
        jobs: &[JobId],
    ) -> Result<Vec<(JobId, Vec<NotificationState>)>, StoreError> {
        let jobs = jobs.to_vec();
        self.ask(|reply| Command::Read(Read::Notifications { jobs, reply }))
            .await
    }

    /// When the first pending notification is due, a held one at its hold's end.
    pub async fn next_notification_due(&self) -> Result<Option<i64>, StoreError> {
        self.ask(|reply| Command::Read(Read::NextNotificationDue { reply }))
            .await
    }
}
