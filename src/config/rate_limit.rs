//! `rate_limit`: `{per_ip: 20/s, burst: 40}` under `server:`, `{per_hook: 2/s, burst: 10}` on a
//! hook (SPEC §17).

use std::num::NonZeroU32;
use std::time::Duration;

use serde_yaml::Value;

use super::decode::{Decoder, Fields};
use super::source_map::{Part, YamlPath};
use super::units::{self, MAX_RATE_COUNT};

/// How many requests one key (a client, or a hook) may make: `count` per `period` on average,
/// and up to `burst` at once after a quiet spell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub count: NonZeroU32,
    pub period: Duration,
    pub burst: NonZeroU32,
}

/// Which `rate_limit` is read: the server's, keyed by client address, or a hook's own.
#[derive(Clone, Copy)]
pub enum Scope {
    Server,
    Hook,
}

impl Scope {
    /// The key that holds the rate.
    fn rate_key(self) -> &'static str {
        match self {
            Scope::Server => "per_ip",
            Scope::Hook => "per_hook",
        }
    }
}

/// Reads `rate_limit` from a section's fields: `Some(None)` when it is not there, `None` when it
/// has errors (recorded in the decoder). `burst` defaults to the rate's count.
pub fn decode(
    decoder: &mut Decoder<'_>,
    fields: &Fields<'_>,
    scope: Scope,
) -> Option<Option<RateLimit>> {
    let Some((value, path)) = fields.get("rate_limit") else {
        return Some(None);
    };
    decode_value(decoder, value, &path, scope).map(Some)
}

fn decode_value(
    decoder: &mut Decoder<'_>,
    value: &Value,
    path: &YamlPath,
    scope: Scope,
) -> Option<RateLimit> {
    let rate_key = scope.rate_key();
    let fields = decoder.mapping(value, path, "`rate_limit`", &[rate_key, "burst"])?;
    let rate = match fields.get(rate_key) {
        None => {
            decoder.error(
                path,
                Part::Value,
                format!(
                    "`rate_limit` needs `{rate_key}`, such as `{{{rate_key}: 20/s, burst: 40}}`"
                ),
            );
            None
        }
        Some((value, path)) => decoder.string(value, &path).and_then(|text| {
            units::parse_rate(&text)
                .map_err(|message| decoder.error(&path, Part::Value, message))
                .ok()
        }),
    };
    let burst = match fields.get("burst") {
        None => Some(None),
        Some((value, path)) => decoder
            .number(value, &path, 1, u64::from(MAX_RATE_COUNT))
            .and_then(|burst| NonZeroU32::new(burst as u32))
            .map(Some),
    };
    let (count, period) = rate?;
    Some(RateLimit {
        count,
        period,
        burst: burst?.unwrap_or(count),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::load_str;

    fn load(text: &str) -> Result<crate::config::Config, String> {
        load_str(text, Path::new("/etc/hookrunner/hooks.yaml"), &|_| None)
            .map_err(|errors| errors.render())
    }

    #[test]
    fn limits_load_with_burst_defaulting_to_the_count() {
        let config = load(
            "server:\n  rate_limit: {per_ip: 20/s, burst: 40}\nhooks:\n  - id: a\n    signature: none\n    rate_limit: {per_hook: 600/min}\n    run: {command: [x]}\n  - id: b\n    signature: none\n    run: {command: [x]}\n",
        )
        .unwrap();
        let server = config.server.rate_limit.expect("the server's limit");
        assert_eq!(
            (
                server.count.get(),
                server.period.as_secs(),
                server.burst.get()
            ),
            (20, 1, 40)
        );
        let hook = config
            .hook("a")
            .unwrap()
            .rate_limit
            .expect("the hook's limit");
        assert_eq!(
            (hook.count.get(), hook.period.as_secs(), hook.burst.get()),
            (600, 60, 600)
        );
        assert_eq!(config.hook("b").unwrap().rate_limit, None);
    }

    #[test]
    fn per_ip_behind_unix_sockets_alone_is_a_warning() {
        let text = |trusted: &str| {
            format!("server:\n  listen: [\"unix:/run/hooks.sock\"]\n  trusted_proxies: [{trusted}]\n  rate_limit: {{per_ip: 20/s}}\nhooks: []\n")
        };
        let config = load(&text("")).unwrap();
        assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
        assert!(
            config.warnings[0]
                .contains("hooks.yaml:4:16: warning: `per_ip` counts all clients as one"),
            "{}",
            config.warnings[0]
        );
        assert_eq!(load(&text("unix")).unwrap().warnings, Vec::<String>::new());
    }

    #[test]
    fn bad_limits_are_reported_at_their_place_with_a_fix() {
        let hook = |limit: &str| {
            format!("hooks:\n  - id: a\n    signature: none\n    rate_limit: {limit}\n    run: {{command: [x]}}\n")
        };
        let cases = [
            (
                "server:\n  rate_limit: {per_ip: 20/m}\nhooks: []\n".to_string(),
                "hooks.yaml:2:24: `20/m`: `m` is not a period of a rate; use `s`, `min` or `h`, as in `20/s`, `600/min` or `100/h`",
            ),
            (
                "server:\n  rate_limit: {per_ip: 20}\nhooks: []\n".to_string(),
                "hooks.yaml:2:24: `20` is not a rate; write it as `20/s`, `600/min` or `100/h`",
            ),
            (
                "server:\n  rate_limit: {per_hook: 2/s}\nhooks: []\n".to_string(),
                "unknown key `per_hook` in `rate_limit`",
            ),
            (
                hook("{per_hook: 0/s}"),
                "hooks.yaml:4:28: `0/s` is not a rate: it needs a whole number of requests from 1 to 1000000 before the `/`",
            ),
            (
                hook("{per_hook: 2/s, burst: 0}"),
                "hooks.yaml:4:40: expected a whole number from 1 to 1000000",
            ),
            (
                hook("{burst: 5}"),
                "hooks.yaml:4:17: `rate_limit` needs `per_hook`, such as `{per_hook: 20/s, burst: 40}`",
            ),
            (hook("{per_ip: 2/s}"), "unknown key `per_ip` in `rate_limit`"),
            (hook("2/s"), "hooks.yaml:4:17:"),
        ];
        for (text, expected) in cases {
            let rendered = load(&text).expect_err(&text);
            assert!(
                rendered.contains(expected),
                "expected {expected:?} in:\n{rendered}"
            );
        }
    }
}
