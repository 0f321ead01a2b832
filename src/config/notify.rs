//! `notify:` (SPEC §13), in `server:` and per hook: which job endings are announced, and where —
//! a signed webhook, a Slack-style incoming webhook, or a command.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_yaml::Value;
use url::Url;

use super::decode::{Decoder, Fields};
use super::secret::{self, SecretOrigin};
use super::source_map::{Part, YamlPath};
use super::statuses::{StatusKey, StatusSet};
use crate::backoff::Backoff;
use crate::job::Status;
use crate::secret::{Secret, Secrets};

const ENTRY_KEYS: &[&str] = &[
    "on",
    "max_age",
    "backoff",
    "max_delay",
    "webhook",
    "slack",
    "command",
];
const TARGETS: &[&str] = &["webhook", "slack", "command"];
/// What a notification may be sent on: a job's final statuses, and the start of a wait for
/// approval.
const ANNOUNCED: &[Status] = &[
    Status::Succeeded,
    Status::Failed,
    Status::TimedOut,
    Status::Cancelled,
    Status::Superseded,
    Status::Interrupted,
    Status::Rejected,
    Status::Expired,
    Status::AwaitingApproval,
];
/// The most entries one `notify` list may have (far more than anyone needs; it keeps the
/// positions of a job's notifications apart, see [`crate::store::WAIT_POSITION`]).
const MAX_ENTRIES: usize = 100;
/// How long a notification is tried before it is given up, by default.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// The wait before a notification's second try, by default; it doubles with each failed try…
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(10);
/// …up to this.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(3600);
/// The fewest key bytes a webhook `secret` may have.
const MIN_KEY_LEN: usize = 16;

/// A hook's notifications (its own, or the server's when it has none), shared, not copied.
pub type Notifications = Arc<[Notification]>;

/// One entry of a `notify:` list.
#[derive(Debug)]
pub struct Notification {
    /// The final statuses that send it.
    pub on: StatusSet,
    /// How long delivery is retried before it is given up.
    pub max_age: Duration,
    /// The waits between tries (the target's `Retry-After` may ask for longer).
    pub backoff: Backoff,
    pub target: Target,
}

#[derive(Debug)]
pub enum Target {
    /// A POST of the event signed the Standard Webhooks way with each key (several while rotating).
    Webhook { url: Endpoint, keys: Secrets },
    /// A POST of `{"text": ...}` to an incoming-webhook URL.
    Slack { url: Endpoint },
    /// A program run with the job's `HOOK_*` variables and its body on stdin.
    Command { argv: Vec<String>, workdir: PathBuf },
}

impl Target {
    /// The target's kind, as the job body and the metrics name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Webhook { .. } => "webhook",
            Target::Slack { .. } => "slack",
            Target::Command { .. } => "command",
        }
    }
}

/// An `http` or `https` URL to send to. It may hold credentials (a password, a Slack token in the
/// path), so `Debug` shows its scheme, host and port only.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint(Url);

impl Endpoint {
    pub fn url(&self) -> &Url {
        &self.0
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = &self.0;
        let host = url.host_str().unwrap_or_default();
        match url.port() {
            Some(port) => write!(f, "Endpoint({}://{host}:{port}/…)", url.scheme()),
            None => write!(f, "Endpoint({}://{host}/…)", url.scheme()),
        }
    }
}

/// Decodes a `notify:` list (`server.notify` or a hook's); `None` when any entry has errors.
pub fn decode_list(
    decoder: &mut Decoder<'_>,
    value: &Value,
    path: &YamlPath,
) -> Option<Notifications> {
    let Value::Sequence(items) = value else {
        decoder.error(
            path,
            Part::Value,
            "`notify` must be a list, each entry such as `- {on: [failed], slack: {url: env:SLACK_WEBHOOK_URL}}`",
        );
        return None;
    };
    if items.len() > MAX_ENTRIES {
        decoder.error(
            path,
            Part::Value,
            format!("`notify` has {} entries, more than {MAX_ENTRIES}; one entry's `on` may list several statuses", items.len()),
        );
        return None;
    }
    decoder.each(items, path, decode_entry).map(Arc::from)
}

/// A hook's `notify`: its own list, or `default` (the server's) when it has none.
pub fn decode_for_hook(
    decoder: &mut Decoder<'_>,
    hook: &Fields<'_>,
    default: &Notifications,
) -> Option<Notifications> {
    match hook.get("notify") {
        None => Some(Arc::clone(default)),
        Some((value, path)) => decode_list(decoder, value, &path),
    }
}

fn decode_entry(decoder: &mut Decoder<'_>, value: &Value, path: &YamlPath) -> Option<Notification> {
    let fields = decoder.mapping(value, path, "a `notify` entry", ENTRY_KEYS)?;
    let on = match fields.get("on") {
        None => {
            decoder.error(
                path,
                Part::Value,
                "the `notify` entry has no `on`; list the endings to announce, such as `on: [failed, timed_out, interrupted]`",
            );
            None
        }
        Some((value, path)) => StatusKey {
            key: "on",
            allowed: ANNOUNCED,
            refusal: &|_| "is not how a job ends; a notification is sent when a job ends, or when it begins to wait for approval",
        }
        .decode(decoder, value, &path),
    };
    let max_age = positive_duration(decoder, &fields, ("max_age", "24h"), DEFAULT_MAX_AGE);
    let backoff = positive_duration(decoder, &fields, ("backoff", "10s"), DEFAULT_BACKOFF);
    let max_delay = positive_duration(decoder, &fields, ("max_delay", "1h"), DEFAULT_MAX_DELAY);
    let target = decode_target(decoder, &fields, path);
    Some(Notification {
        on: on?,
        max_age: max_age?,
        backoff: Backoff::new(backoff?, max_delay?),
        target: target?,
    })
}

/// The duration under `key`, `default` when absent; zero is refused, with `example` as a better
/// value.
fn positive_duration(
    decoder: &mut Decoder<'_>,
    fields: &Fields<'_>,
    (key, example): (&str, &str),
    default: Duration,
) -> Option<Duration> {
    let (value, path) = match fields.get(key) {
        None => return Some(default),
        Some(found) => found,
    };
    match decoder.duration(value, &path) {
        Some(duration) if duration.is_zero() => {
            decoder.error(
                &path,
                Part::Value,
                format!("`{key}` must be longer than zero, such as `{example}`"),
            );
            None
        }
        duration => duration,
    }
}

/// The entry's one target. Every target written is decoded, so that all their problems are
/// reported in one pass (and a literal URL's line is known, never to be quoted), then more than
/// one is refused.
fn decode_target(
    decoder: &mut Decoder<'_>,
    fields: &Fields<'_>,
    path: &YamlPath,
) -> Option<Target> {
    let mut targets = Vec::new();
    for name in TARGETS {
        let Some((value, path)) = fields.get(name) else {
            continue;
        };
        let target = match *name {
            "webhook" => decode_webhook(decoder, value, &path),
            "slack" => decode_slack(decoder, value, &path),
            _ => decode_command(decoder, value, &path),
        };
        targets.push((*name, path, target));
    }
    match targets.as_mut_slice() {
        [] => {
            decoder.error(
                path,
                Part::Value,
                "the `notify` entry has no target; add one of `webhook: {url, secret}`, `slack: {url}` or `command: [program, args...]`",
            );
            None
        }
        [(_, _, target)] => target.take(),
        [(first, ..), (second, second_path, _), ..] => {
            decoder.error(
                second_path,
                Part::Key,
                format!("the `notify` entry has both `{first}` and `{second}`; an entry has one target, so split it into two entries with the same `on`"),
            );
            None
        }
    }
}

fn decode_slack(decoder: &mut Decoder<'_>, value: &Value, path: &YamlPath) -> Option<Target> {
    let fields = decoder.mapping(value, path, "`slack`", &["url"])?;
    let Some((value, url_path)) = fields.get("url") else {
        decoder.error(
            path,
            Part::Value,
            "`slack` needs `url:`, the incoming webhook's URL (e.g. `env:SLACK_WEBHOOK_URL`)",
        );
        return None;
    };
    decode_url(decoder, value, &url_path, true).map(|url| Target::Slack { url })
}

fn decode_webhook(decoder: &mut Decoder<'_>, value: &Value, path: &YamlPath) -> Option<Target> {
    let fields = decoder.mapping(value, path, "`webhook`", &["url", "secret"])?;
    let url = match fields.get("url") {
        None => {
            decoder.error(
                path,
                Part::Value,
                "`webhook` needs `url:`, such as `https://ops.example.com/hookrunner`",
            );
            None
        }
        Some((value, path)) => decode_url(decoder, value, &path, false),
    };
    let keys = match fields.get("secret") {
        None => {
            decoder.error(
                path,
                Part::Value,
                "`webhook` needs `secret:`, a Standard Webhooks key (`whsec_` and base64), such as `env:NOTIFY_SECRET`",
            );
            None
        }
        Some((value, path)) => decode_keys(decoder, value, &path),
    };
    Some(Target::Webhook {
        url: url?,
        keys: keys?,
    })
}

/// The webhook's signing keys: one `whsec_` secret, or a list while rotating (each signs).
fn decode_keys(decoder: &mut Decoder<'_>, value: &Value, path: &YamlPath) -> Option<Secrets> {
    let items: Vec<(&Value, YamlPath)> = match value {
        Value::Sequence(items) if items.is_empty() => {
            decoder.error(path, Part::Value, "the list of secrets is empty");
            return None;
        }
        Value::Sequence(items) => items
            .iter()
            .enumerate()
            .map(|(index, item)| (item, path.index(index)))
            .collect(),
        other => vec![(other, path.clone())],
    };
    let keys: Vec<Option<Secret>> = items
        .into_iter()
        .map(|(value, path)| {
            let secret = decoder.secret(value, &path)?;
            signing_key(&secret)
                .map_err(|message| decoder.error(&path, Part::Value, message))
                .ok()
        })
        .collect();
    keys.into_iter().collect::<Option<Vec<_>>>().map(Secrets)
}

/// The key bytes of a `whsec_` secret; the message never quotes the secret.
pub fn signing_key(secret: &Secret) -> Result<Secret, String> {
    const FORM: &str = "a notification `secret` is a Standard Webhooks key: `whsec_` followed by base64, as a receiver shows it (make one with `echo \"whsec_$(openssl rand -base64 32)\"`)";
    if !secret.expose().starts_with(b"whsec_") {
        return Err(FORM.to_string());
    }
    let key = crate::signature::decode_standard_secret(secret).map_err(|_| FORM.to_string())?;
    if key.expose().len() < MIN_KEY_LEN {
        return Err(format!(
            "the notification `secret` holds a {}-byte key; use at least {MIN_KEY_LEN} bytes (make one with `echo \"whsec_$(openssl rand -base64 32)\"`)",
            key.expose().len()
        ));
    }
    Ok(key)
}

/// A target's URL: a literal, or the secret syntax (`env:`, `file:`, `cred:`). A Slack URL is a
/// credential, so writing it in the file gets the literal-secret warning; so does a webhook URL
/// with a user or password in it. No message quotes the URL, nor its line when it could hold one.
fn decode_url(
    decoder: &mut Decoder<'_>,
    value: &Value,
    path: &YamlPath,
    is_credential: bool,
) -> Option<Endpoint> {
    const FORM: &str = "write it as `https://host/path`";
    let text = decoder.string(value, path)?;
    if text.trim().is_empty() {
        decoder.error(path, Part::Value, format!("`url` is empty; {FORM}"));
        return None;
    }
    let (resolved, origin) = match secret::resolve(&text, &decoder.base_dir, decoder.lookup_env) {
        Ok(resolved) => resolved,
        Err(message) => {
            decoder.error(path, Part::Value, message);
            return None;
        }
    };
    let literal = origin == SecretOrigin::Literal;
    let source = if literal {
        "`url`".to_string()
    } else {
        format!("the URL in `{text}`")
    };
    let parsed = std::str::from_utf8(resolved.expose())
        .map_err(|_| "is not text".to_string())
        .and_then(|url| Url::parse(url.trim()).map_err(|error| format!("is not a URL ({error})")));
    let url = match parsed {
        Ok(url) => url,
        Err(why) => {
            if literal {
                decoder.hide(path);
            }
            decoder.error(path, Part::Value, format!("{source} {why}; {FORM}"));
            return None;
        }
    };
    let has_credentials = !url.username().is_empty() || url.password().is_some();
    if literal && (is_credential || has_credentials) {
        decoder.literal_secret(path);
    }
    if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
        decoder.error(
            path,
            Part::Value,
            format!(
                "{source} must be an `http://` or `https://` URL with a host; found `{}:`",
                url.scheme()
            ),
        );
        return None;
    }
    Some(Endpoint(url))
}

fn decode_command(decoder: &mut Decoder<'_>, value: &Value, path: &YamlPath) -> Option<Target> {
    let items = super::hook::command_items(
        decoder,
        value,
        path,
        "`command` must be a list, such as `[\"/usr/local/bin/announce\", \"--channel\", \"ops\"]`",
    )?;
    let mut argv = Some(Vec::with_capacity(items.len()));
    for (index, item) in items.iter().enumerate() {
        let at = path.index(index);
        let Some(arg) = decoder.string(item, &at) else {
            argv = None;
            continue;
        };
        if arg.contains("{{") {
            decoder.error(
                &at,
                Part::Value,
                "`{{ }}` is not expanded in a notification's `command`: the command reads `HOOK_ID`, `HOOK_JOB_ID`, `HOOK_STATUS`, `HOOK_EXIT_CODE`, `HOOK_DURATION_MS` and the job body on stdin",
            );
            argv = None;
            continue;
        }
        if let Some(argv) = &mut argv {
            argv.push(arg);
        }
    }
    Some(Target::Command {
        argv: argv?,
        workdir: decoder.base_dir.clone(),
    })
}

#[cfg(test)]
#[path = "notify_tests.rs"]
mod tests;
