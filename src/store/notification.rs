//! Notifications as the store keeps them (SPEC §13): the outbox of a job's end.
//!
//! A job whose hook has a `notify` list is admitted with [`NewJob::notify`](super::NewJob) set,
//! so its end, whichever way it comes (the run's end, a cancel, a supersession, a restart's
//! `interrupted`, another instance's reaping), is kept together with the fact that it is still
//! to be announced. The delivery worker asks for such jobs ([`Store::unannounced`]), builds their
//! notifications from the config, and keeps them and clears the mark in one transaction
//! ([`Store::announce`]); a crash between the two leaves the mark, and the next look builds them
//! again. A notification is then tried until it is delivered or given up: each try is handed to
//! one deliverer at a time ([`Store::due_notifications`] holds it), and its result is kept
//! ([`Store::notification_tried`]) before the next.
//!
//! [`Store::unannounced`]: super::Store::unannounced
//! [`Store::announce`]: super::Store::announce
//! [`Store::due_notifications`]: super::Store::due_notifications
//! [`Store::notification_tried`]: super::Store::notification_tried

use crate::job::JobId;

/// Added to an entry's place in its `notify` list to make the position of the notification that
/// a job began to wait for approval, which is kept apart from the one of its end by the same
/// entry (a list has far fewer entries).
pub const WAIT_POSITION: u32 = 1 << 16;

/// A notification to keep for a job's end, built by the delivery worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewNotification {
    /// Its entry's place in the hook's `notify` list, plus [`WAIT_POSITION`] for a wait's
    /// notification. With the job's id, it names the notification: a job's end (and its wait)
    /// is announced at most once per entry.
    pub position: u32,
    /// `webhook`, `slack` or `command`.
    pub target: String,
    /// Which entry of the config delivers it (a digest of the entry's target and `on`, never of
    /// a secret's value): each try goes to the entry of the job's hook with this route, so a
    /// reload that reorders, changes or removes entries never sends it somewhere else.
    pub route: String,
    /// When it was made (unix ms): the job's end.
    pub created_ms: i64,
    /// When it is given up if not delivered (unix ms): `created_ms` plus the entry's `max_age`.
    pub expires_ms: i64,
    /// What is sent, the same on every try: the webhook's event, the Slack message, or the
    /// command's stdin.
    pub body: Vec<u8>,
    /// The command's `HOOK_*` environment; empty for the other targets.
    pub env: Vec<(String, String)>,
}

/// A notification handed out for one try by [`Store::due_notifications`](super::Store).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueNotification {
    pub job: JobId,
    /// The job's hook, whose `notify` list says where it goes.
    pub hook: String,
    pub position: u32,
    pub target: String,
    /// See [`NewNotification::route`].
    pub route: String,
    /// The tries made so far, this one included.
    pub attempts: u32,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub body: Vec<u8>,
    pub env: Vec<(String, String)>,
}

impl DueNotification {
    /// The notification's id, the same on every try: a webhook's `webhook-id`, by which the
    /// receiver recognises a second delivery of it.
    pub fn id(&self) -> String {
        message_id(&self.job, self.position)
    }
}

/// The id of the notification of `job` made by its hook's `position`th `notify` entry.
pub fn message_id(job: &JobId, position: u32) -> String {
    format!("msg_{job}_{position}")
}

/// Where a notification stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotificationStatus {
    /// Not delivered yet, and not given up: a try is due or on its way.
    Pending,
    Delivered,
    /// Given up: its `max_age` passed, the target answered 410, or it could not be sent at all.
    Failed,
}

impl NotificationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationStatus::Pending => "pending",
            NotificationStatus::Delivered => "delivered",
            NotificationStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<NotificationStatus> {
        [
            NotificationStatus::Pending,
            NotificationStatus::Delivered,
            NotificationStatus::Failed,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
    }
}

/// A notification as a job's body shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotificationState {
    pub position: u32,
    pub target: String,
    pub status: NotificationStatus,
    /// The tries made (or under way).
    pub attempts: u32,
    /// Why the last try failed, as the deliverer said it (never a URL or a secret).
    pub last_error: Option<String>,
    /// When the next try is due (unix ms), while pending.
    pub next_attempt_ms: Option<i64>,
}

/// What became of one try, for [`Store::notification_tried`](super::Store).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tried {
    Delivered,
    /// Try again at `at_ms` (unix ms); `error` is why this try failed.
    Retry {
        at_ms: i64,
        error: String,
    },
    /// Given up.
    Failed {
        error: String,
    },
}
