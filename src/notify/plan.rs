//! Which notifications a job's end (or its wait for approval) makes, and what each sends: one
//! per entry of its hook's `notify` list whose `on` names the job's status, built once (the same
//! bytes on every try).

use sha2::{Digest, Sha256};

use crate::config::{Notification, Target};
use crate::job::{now_ms, Job, Status};
use crate::store::{NewNotification, WAIT_POSITION};

use super::{command, slack, webhook};

/// Whether the notifications of `job`'s end show its output (a `slack` entry sends the end of
/// its log), so the caller reads the log only when one does.
pub fn needs_output(job: &Job, entries: &[Notification]) -> bool {
    matching(job, entries).any(|(_, entry)| matches!(entry.target, Target::Slack { .. }))
}

/// The notifications of `job`'s end, in the order of `entries`. `include_output` is the hook's
/// `response.include_output` (whether the job body shows `stdout` and `stderr`); `output` is the
/// end of the job's log, for a `slack` entry, which links to the job under `public_url` (the
/// server's `public_url`) when there is one.
pub fn plan(
    job: &Job,
    entries: &[Notification],
    include_output: bool,
    output: &[u8],
    public_url: Option<&str>,
) -> Vec<NewNotification> {
    // A wait's notification dates from the trigger, an end's from the end.
    let created_ms = match job.approval_until_ms() {
        Some(_) => job.created_ms,
        None => job.finished_ms().unwrap_or_else(now_ms),
    };
    matching(job, entries)
        .map(|(position, entry)| {
            let (body, env) = match &entry.target {
                Target::Webhook { .. } => {
                    (webhook::body(job, include_output, created_ms), Vec::new())
                }
                Target::Slack { .. } => (slack::body(job, output, public_url), Vec::new()),
                Target::Command { .. } => (
                    command::stdin(job, include_output, created_ms),
                    command::env(job),
                ),
            };
            let max_age = i64::try_from(entry.max_age.as_millis()).unwrap_or(i64::MAX);
            NewNotification {
                position,
                target: entry.target.kind().to_string(),
                route: route(entry),
                created_ms,
                expires_ms: created_ms.saturating_add(max_age),
                body,
                env,
            }
        })
        .collect()
}

/// Names an entry of a `notify` list by what it sends where: a digest of its target (the URL,
/// or the program, its arguments and directory) and its `on`. Not of a webhook's signing keys,
/// so that rotating them keeps the pending notifications; not of its place in the list, so that
/// adding an entry before it does not make it another.
pub fn route(entry: &Notification) -> String {
    let mut digest = Sha256::new();
    digest.update(entry.target.kind().as_bytes());
    match &entry.target {
        Target::Webhook { url, .. } | Target::Slack { url } => {
            digest.update(b"\0");
            digest.update(url.url().as_str().as_bytes());
        }
        Target::Command { argv, workdir } => {
            for part in argv {
                digest.update(b"\0");
                digest.update(part.as_bytes());
            }
            digest.update(b"\0\0");
            digest.update(workdir.as_os_str().as_encoded_bytes());
        }
    }
    for status in Status::ALL {
        if entry.on.contains(status) {
            digest.update(b"\0");
            digest.update(status.as_str().as_bytes());
        }
    }
    hex::encode(&digest.finalize()[..16])
}

/// The entries that announce `job` as it is now (ended, or waiting for approval), each with its
/// notification's position: its place in the list, plus [`WAIT_POSITION`] for a wait.
fn matching<'a>(
    job: &'a Job,
    entries: &'a [Notification],
) -> impl Iterator<Item = (u32, &'a Notification)> + 'a {
    let status = job.status();
    let announced = status.is_final() || status == Status::AwaitingApproval;
    let offset = if status == Status::AwaitingApproval {
        WAIT_POSITION
    } else {
        0
    };
    (0u32..)
        .zip(entries)
        .filter(move |(_, entry)| announced && entry.on.contains(status))
        .map(move |(position, entry)| (position + offset, entry))
}
