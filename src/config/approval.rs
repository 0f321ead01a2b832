//! A hook's `approval:` (SPEC §15): its jobs wait, `awaiting_approval`, until an admin approves
//! or rejects them, and expire after `timeout`. Only `async` hooks may wait: a `wait` or `stream`
//! client would be held for as long as the approval takes.

use std::time::Duration;

use super::decode::{Decoder, Fields};
use super::source_map::Part;
use super::{ResponseMode, ResponseSettings, RunOn};

const KEYS: &[&str] = &["timeout"];
/// How long a job waits for approval when `timeout` is not given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// The longest wait: a job nobody decides on for a month is expired rather than kept for ever.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(30 * 24 * 3600);

/// A hook's jobs wait for an admin's decision before they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Approval {
    /// How long a job waits before it ends `expired`: 1 second to [`MAX_TIMEOUT`].
    pub timeout: Duration,
}

/// Decodes a hook's `approval`; `response` and `run_on` are the hook's own (`None` when they had
/// errors, already reported). `Some(None)`: the hook has no approval.
pub fn decode(
    decoder: &mut Decoder<'_>,
    hook: &Fields<'_>,
    response: Option<&ResponseSettings>,
    run_on: Option<RunOn>,
) -> Option<Option<Approval>> {
    let Some((value, path)) = hook.get("approval") else {
        return Some(None);
    };
    if response.is_some_and(|response| response.mode != ResponseMode::Async) {
        decoder.error(
            &path,
            Part::Key,
            "`approval` needs `response: {mode: async}`: a `wait` or `stream` client would be held until someone approves; make the hook `async` or remove `approval`",
        );
        return None;
    }
    if run_on == Some(RunOn::All) {
        decoder.error(
            &path,
            Part::Key,
            "`approval` cannot be used with `run_on: all`: each instance's copy would need its own approval; remove one of the two",
        );
        return None;
    }
    let fields = decoder.mapping(value, &path, "`approval`", KEYS)?;
    let Some((value, path)) = fields.get("timeout") else {
        return Some(Some(Approval {
            timeout: DEFAULT_TIMEOUT,
        }));
    };
    let timeout = decoder.duration(value, &path)?;
    if timeout < Duration::from_secs(1) || timeout > MAX_TIMEOUT {
        decoder.error(
            &path,
            Part::Value,
            format!(
                "`timeout` must be between 1s and {}, such as `24h`",
                humantime::format_duration(MAX_TIMEOUT)
            ),
        );
        return None;
    }
    Some(Some(Approval { timeout }))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::load_str;

    const HOOK: &str = "server: {admin_token: t0ken-for-tests}\nhooks:\n  - id: a\n    signature: none\n    run: {command: [x]}\n";

    fn load(rest: &str) -> Result<Option<Approval>, String> {
        let text = format!("{HOOK}{rest}");
        load_str(&text, Path::new("hooks.yaml"), &|_| None)
            .map(|config| config.hooks[0].approval)
            .map_err(|errors| errors.render())
    }

    #[test]
    fn approval_settings_and_their_defaults() {
        let cases: &[(&str, Option<u64>)] = &[
            ("    response: {mode: async}\n", None),
            (
                "    response: {mode: async}\n    approval: {}\n",
                Some(24 * 3600),
            ),
            (
                "    response: {mode: async}\n    approval: {timeout: 90s}\n",
                Some(90),
            ),
            (
                "    response: {mode: async}\n    approval:\n      timeout: 2h\n",
                Some(7200),
            ),
        ];
        for (text, timeout) in cases {
            let approval = load(text).unwrap_or_else(|errors| panic!("{text}: {errors}"));
            assert_eq!(
                approval.map(|approval| approval.timeout.as_secs()),
                *timeout,
                "{text}"
            );
        }
    }

    #[test]
    fn approval_refusals_say_what_to_change() {
        let cases: &[(&str, &str)] = &[
            (
                "    approval: {timeout: 1h}\n",
                "needs `response: {mode: async}`",
            ),
            (
                "    response: {mode: stream}\n    approval: {}\n",
                "needs `response: {mode: async}`",
            ),
            (
                "    response: {mode: async}\n    run_on: all\n    approval: {}\n",
                "cannot be used with `run_on: all`",
            ),
            (
                "    response: {mode: async}\n    approval: {timeout: 0s}\n",
                "between 1s and",
            ),
            (
                "    response: {mode: async}\n    approval: {timeout: 90d}\n",
                "between 1s and",
            ),
            (
                "    response: {mode: async}\n    approval: {timout: 1h}\n",
                "timout",
            ),
            (
                "    response: {mode: async}\n    approval: yes\n",
                "approval",
            ),
        ];
        let without_admin = "hooks:\n  - id: a\n    signature: none\n    run: {command: [x]}\n    response: {mode: async}\n    approval: {}\n";
        let errors = load_str(without_admin, Path::new("hooks.yaml"), &|_| None)
            .map(|_| ())
            .expect_err("approval without an admin token");
        assert!(errors.render().contains("needs `server.admin_token`"));
        for (text, expected) in cases {
            let errors = load(text).expect_err(text);
            assert!(errors.contains(expected), "{text}: {errors}");
            assert!(errors.contains("hooks.yaml:"), "{text}: {errors}");
        }
    }
}
