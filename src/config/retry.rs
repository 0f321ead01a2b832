//! A hook's `retry:` (SPEC §12): how many runs a job may have, the delays between them, and which
//! endings call for another run. Only `async` hooks may retry.

use std::time::Duration;

use super::decode::{Decoder, Fields};
use super::source_map::Part;
use super::statuses::{StatusKey, StatusSet};
use super::{ResponseMode, ResponseSettings};
use crate::job::Status;

const KEYS: &[&str] = &["attempts", "backoff", "max_delay", "on"];
/// At most this many runs of one job, the first included.
pub const MAX_ATTEMPTS: u64 = 100;
/// The endings a job may be run again after.
const RETRYABLE: &[Status] = &[Status::Failed, Status::TimedOut, Status::Interrupted];

/// How a hook's jobs are run again. `attempts: 1` (the default) never runs a job twice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    /// Runs at most, the first included: 1 to [`MAX_ATTEMPTS`].
    pub attempts: u32,
    /// The delay before the second run; it doubles for each run after, up to `max_delay`.
    pub backoff: Duration,
    /// Never shorter than `backoff`.
    pub max_delay: Duration,
    /// The statuses that call for another run: some of `failed`, `timed_out`, `interrupted`.
    pub on: StatusSet,
}

impl Default for Retry {
    fn default() -> Retry {
        Retry {
            attempts: 1,
            backoff: Duration::from_secs(10),
            max_delay: Duration::from_secs(600),
            on: StatusSet::of(&[Status::Failed, Status::TimedOut]),
        }
    }
}

impl Retry {
    /// Whether a run that ended with `status`, as run number `attempt` (from 1), is run again.
    pub fn retries(&self, status: Status, attempt: u32) -> bool {
        attempt < self.attempts && self.on.contains(status)
    }
}

fn refusal(status: Status) -> &'static str {
    match status {
        Status::Succeeded => "is never retried: the command did what it was asked",
        Status::Cancelled => "is never retried: someone stopped the job on purpose",
        Status::Superseded => "is never retried: a newer trigger replaced the job",
        _ => "is not how a job ends",
    }
}

/// Decodes a hook's `retry`; `response` is the hook's answer settings (`None` when they had
/// errors, already reported).
pub fn decode(
    decoder: &mut Decoder<'_>,
    hook: &Fields<'_>,
    response: Option<&ResponseSettings>,
) -> Option<Retry> {
    let Some((value, path)) = hook.get("retry") else {
        return Some(Retry::default());
    };
    if response.is_some_and(|response| response.mode != ResponseMode::Async) {
        decoder.error(
            &path,
            Part::Key,
            "`retry` needs `response: {mode: async}`: a `wait` or `stream` answer reports the first run to a client that is gone before the next one; make the hook `async` or remove `retry`",
        );
        return None;
    }
    let fields = decoder.mapping(value, &path, "`retry`", KEYS)?;
    let mut retry = Retry::default();
    let mut valid = true;
    if let Some((value, path)) = fields.get("attempts") {
        match decoder.number(value, &path, 1, MAX_ATTEMPTS) {
            Some(attempts) => retry.attempts = attempts as u32,
            None => valid = false,
        }
    }
    let mut duration = |decoder: &mut Decoder<'_>, key: &str, setting: &mut Duration| {
        let (value, path) = fields.get(key)?;
        match decoder.duration(value, &path) {
            Some(duration) if duration.is_zero() => {
                decoder.error(
                    &path,
                    Part::Value,
                    format!("`{key}` must be longer than zero, such as `10s`"),
                );
                valid = false;
            }
            Some(duration) => *setting = duration,
            None => valid = false,
        }
        Some(path)
    };
    let backoff_path = duration(decoder, "backoff", &mut retry.backoff);
    let max_delay_path = duration(decoder, "max_delay", &mut retry.max_delay);
    // The defaults are in order, so one of the two was written when they are not.
    let written = max_delay_path.as_ref().or(backoff_path.as_ref());
    if let Some(at) = written.filter(|_| valid && retry.max_delay < retry.backoff) {
        let default = if max_delay_path.is_none() {
            ", the default"
        } else {
            ""
        };
        decoder.error(
            at,
            Part::Value,
            format!(
                "`max_delay` ({}{default}) is shorter than `backoff` ({}): the delays double from `backoff` up to `max_delay`; make `max_delay` at least `backoff`",
                humantime::format_duration(retry.max_delay),
                humantime::format_duration(retry.backoff),
            ),
        );
        valid = false;
    }
    if let Some((value, path)) = fields.get("on") {
        let key = StatusKey {
            key: "retry.on",
            allowed: RETRYABLE,
            refusal: &refusal,
        };
        match key.decode(decoder, value, &path) {
            Some(on) => retry.on = on,
            None => valid = false,
        }
    }
    valid.then_some(retry)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::load_str;

    const ASYNC: &str = "hooks:\n  - id: a\n    signature: none\n    run: {command: [x]}\n    response: {mode: async}\n";

    fn load(retry: &str) -> Result<Retry, String> {
        let text = format!("{ASYNC}{retry}");
        load_str(&text, Path::new("hooks.yaml"), &|_| None)
            .map(|config| config.hooks[0].retry)
            .map_err(|errors| errors.render())
    }

    #[test]
    fn retry_settings_and_their_defaults() {
        let on = |statuses: &[Status]| StatusSet::of(statuses);
        let cases: &[(&str, u32, u64, u64, StatusSet)] = &[
            ("", 1, 10, 600, on(&[Status::Failed, Status::TimedOut])),
            (
                "    retry: {attempts: 3}\n",
                3,
                10,
                600,
                on(&[Status::Failed, Status::TimedOut]),
            ),
            (
                "    retry: {attempts: 5, backoff: 1s, max_delay: 1m, on: [failed, interrupted]}\n",
                5,
                1,
                60,
                on(&[Status::Failed, Status::Interrupted]),
            ),
            (
                "    retry:\n      on: timed_out\n      backoff: 10m\n",
                1,
                600,
                600,
                on(&[Status::TimedOut]),
            ),
        ];
        for (text, attempts, backoff, max_delay, statuses) in cases {
            let retry = load(text).unwrap_or_else(|errors| panic!("{text}: {errors}"));
            let expected = Retry {
                attempts: *attempts,
                backoff: Duration::from_secs(*backoff),
                max_delay: Duration::from_secs(*max_delay),
                on: *statuses,
            };
            assert_eq!(retry, expected, "{text}");
        }
    }

    #[test]
    fn check_refuses_bad_retry_settings_and_says_why() {
        let takes = "`retry.on` takes `failed`, `timed_out` and `interrupted`";
        let cases: Vec<(&str, String)> = vec![
            ("    retry: {attempts: 0}\n", "hooks.yaml:6:23: expected a whole number from 1 to 100".into()),
            ("    retry: {attempts: 101}\n", "hooks.yaml:6:23: expected a whole number from 1 to 100".into()),
            ("    retry: {attempt: 2}\n", "hooks.yaml:6:13: unknown key `attempt` in `retry`, did you mean `attempts`?".into()),
            ("    retry: 3\n", "hooks.yaml:6:12: `retry` must be a mapping of keys to values".into()),
            ("    retry: {on: [succeeded]}\n", format!("hooks.yaml:6:18: `succeeded` is never retried: the command did what it was asked; {takes}")),
            ("    retry: {on: [failed, cancelled]}\n", format!("hooks.yaml:6:26: `cancelled` is never retried: someone stopped the job on purpose; {takes}")),
            ("    retry: {on: superseded}\n", format!("hooks.yaml:6:17: `superseded` is never retried: a newer trigger replaced the job; {takes}")),
            ("    retry: {on: [running]}\n", format!("hooks.yaml:6:18: `running` is not how a job ends; {takes}")),
            ("    retry: {on: [faild]}\n", "hooks.yaml:6:18: `faild` is not a job status, did you mean `failed`?".into()),
            ("    retry: {on: [sometimes]}\n", format!("hooks.yaml:6:18: `sometimes` is not a job status; {takes}")),
            ("    retry: {on: []}\n", "hooks.yaml:6:17: `retry.on` is empty; list the statuses it takes: `failed`, `timed_out` and `interrupted`".into()),
            ("    retry: {backoff: 0s}\n", "hooks.yaml:6:22: `backoff` must be longer than zero, such as `10s`".into()),
            ("    retry: {backoff: 10}\n", "hooks.yaml:6:22: `10` has no unit".into()),
            ("    retry: {max_delay: 1s}\n", "hooks.yaml:6:24: `max_delay` (1s) is shorter than `backoff` (10s): the delays double from `backoff` up to `max_delay`; make `max_delay` at least `backoff`".into()),
            ("    retry: {backoff: 1h}\n", "hooks.yaml:6:22: `max_delay` (10m, the default) is shorter than `backoff` (1h)".into()),
        ];
        for (text, expected) in cases {
            let errors = load(text).expect_err(text);
            assert!(
                errors.contains(&expected),
                "{text}: expected {expected:?} in:\n{errors}"
            );
        }
    }

    #[test]
    fn only_async_hooks_retry() {
        let needs_async = "`retry` needs `response: {mode: async}`: a `wait` or `stream` answer reports the first run to a client that is gone before the next one; make the hook `async` or remove `retry`";
        let cases = [
            "    response: {mode: wait}\n    retry: {attempts: 3}\n",
            "    response: {mode: stream}\n    retry: {attempts: 3}\n",
            "    retry: {attempts: 3}\n",
        ];
        for retry in cases {
            let text = format!(
                "hooks:\n  - id: a\n    signature: none\n    run: {{command: [x]}}\n{retry}"
            );
            let errors = load_str(&text, Path::new("hooks.yaml"), &|_| None)
                .map(|_| ())
                .expect_err(retry)
                .render();
            let line = text
                .lines()
                .position(|line| line.contains("retry"))
                .unwrap()
                + 1;
            let expected = format!("hooks.yaml:{line}:5: {needs_async}");
            assert!(
                errors.contains(&expected),
                "{retry}: expected {expected:?} in:\n{errors}"
            );
        }
    }

    #[test]
    fn a_job_runs_again_while_attempts_remain_and_its_ending_calls_for_it() {
        let retry = Retry {
            attempts: 3,
            ..Retry::default()
        };
        let cases = [
            (Status::Failed, 1, true),
            (Status::TimedOut, 2, true),
            (Status::Failed, 3, false),
            (Status::Interrupted, 1, false),
            (Status::Succeeded, 1, false),
            (Status::Cancelled, 1, false),
        ];
        for (status, attempt, expected) in cases {
            assert_eq!(
                retry.retries(status, attempt),
                expected,
                "{status:?} {attempt}"
            );
        }
        assert!(!Retry::default().retries(Status::Failed, 1));
    }
}
