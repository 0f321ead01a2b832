//! The `webhook` target: the event body `{"type": "job.<status>", "timestamp", "data"}` and its
//! Standard Webhooks signature headers (standardwebhooks.com).

use base64::Engine as _;

use crate::job::{rfc3339, Job, JobView};
use crate::secret::Secrets;
use crate::signature::{hmac_digest, Algorithm};

pub const ID: &str = "webhook-id";
pub const TIMESTAMP: &str = "webhook-timestamp";
pub const SIGNATURE: &str = "webhook-signature";

/// The event for a job's end: `data` is the job body, with output only when `include_output`
/// (as `GET /jobs/{id}` shows it). `at_ms` is when the notification was made, the job's end; it
/// is `timestamp`, and the job body's "now" for a job still running.
pub fn body(job: &Job, include_output: bool, at_ms: i64) -> Vec<u8> {
    let event = serde_json::json!({
        "type": format!("job.{}", job.status().as_str()),
        "timestamp": rfc3339(at_ms),
        "data": JobView::of(job, include_output, at_ms),
    });
    serde_json::to_vec(&event).expect("a JSON value serializes")
}

/// The headers of one try: `webhook-id` (the notification's id, the same on every try),
/// `webhook-timestamp` (this try's Unix seconds) and `webhook-signature`, one `v1,<base64>` per
/// key, space-separated, so a receiver that knows any one of them while keys rotate accepts it.
/// `keys` are the decoded key bytes (see [`crate::config::signing_key`]).
pub fn headers(
    keys: &Secrets,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    let timestamp = timestamp.to_string();
    let signatures: Vec<String> = keys
        .iter()
        .map(|key| {
            let digest = hmac_digest(
                Algorithm::Sha256,
                key.expose(),
                &[id.as_bytes(), b".", timestamp.as_bytes(), b".", body],
            );
            format!(
                "v1,{}",
                base64::engine::general_purpose::STANDARD.encode(digest)
            )
        })
        .collect();
    vec![
        (ID, id.to_string()),
        (TIMESTAMP, timestamp),
        (SIGNATURE, signatures.join(" ")),
    ]
}
