//! What a notification's try decides: delivered, tried again later (when), or given up (why).
//! Plain data in, plain data out; the random draw of the backoff is passed in.

use std::time::Duration;

use rand::Rng;

use crate::backoff::Backoff;
use crate::store::Tried;

/// How one try went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A 2xx answer, or the command exited 0.
    Delivered,
    /// 410 Gone: the receiver asks never to be sent this again.
    Gone,
    /// Anything else; `error` says what (never a URL or a secret), `retry_after` is the
    /// receiver's `Retry-After`.
    Failed {
        error: String,
        retry_after: Option<Duration>,
    },
    /// It cannot be sent at all, now or later (its `notify` entry is gone from the config).
    Impossible { error: String },
}

/// The result to keep for try number `attempts` (from 1) made at `now_ms` of a notification
/// that is given up at `expires_ms`: a failed try is repeated after the backoff (or the
/// receiver's `Retry-After`, if longer), unless that falls after `expires_ms`.
pub fn settle(
    answer: Answer,
    attempts: u32,
    now_ms: i64,
    expires_ms: i64,
    backoff: &Backoff,
    random: &mut impl Rng,
) -> Tried {
    let (error, retry_after) = match answer {
        Answer::Delivered => return Tried::Delivered,
        Answer::Gone => {
            return Tried::Failed {
                error: "the target answered 410 Gone, which asks not to be sent it again".into(),
            }
        }
        Answer::Impossible { error } => return Tried::Failed { error },
        Answer::Failed { error, retry_after } => (error, retry_after),
    };
    let wait = backoff.delay(attempts, random);
    let wait = retry_after.map_or(wait, |asked| asked.max(wait));
    let at_ms = now_ms.saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
    if at_ms > expires_ms {
        let tries = if attempts == 1 { "try" } else { "tries" };
        return Tried::Failed {
            error: format!(
                "{error}; given up after {attempts} {tries}, as its `max_age` ends before the next"
            ),
        };
    }
    Tried::Retry { at_ms, error }
}
