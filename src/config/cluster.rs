//! The settings of instances sharing a store (`server.store`, `instance`, `heartbeat`, `lease`):
//! their rules, shared by the file and the command line, and their decoding from `server:`.

use std::path::Path;
use std::time::Duration;

use super::decode::{Decoder, Fields};
use super::secret::{self, SecretOrigin};
use super::source_map::Part;
use super::{ServerSettings, StoreSetting};
use crate::secret::Secret;

/// The name of an instance whose host name is not a valid instance name.
const FALLBACK_INSTANCE: &str = "hookrunner";
const MAX_INSTANCE_LEN: usize = 63;
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// Reads `store`: `sqlite`, or a PostgreSQL URL written as a secret (`env:NAME`, `file:PATH`,
/// `cred:NAME` or a literal), since it can hold a password. `base` anchors relative `file:` paths.
/// With the store, how it was written (`None` for `sqlite`). Messages never quote the value.
pub fn parse_store(
    text: &str,
    base: &Path,
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<(StoreSetting, Option<SecretOrigin>), String> {
    const FORMS: &str =
        "`sqlite` or a PostgreSQL URL starting with `postgres://` or `postgresql://`";
    if text == "sqlite" {
        return Ok((StoreSetting::Sqlite, None));
    }
    if text.is_empty() {
        return Err(format!("the store is empty; write {FORMS}"));
    }
    let (secret, origin) = secret::resolve(text, base, lookup_env)?;
    let value = secret.expose();
    if value == b"sqlite" {
        return Ok((StoreSetting::Sqlite, Some(origin)));
    }
    let is_postgres = std::str::from_utf8(value)
        .is_ok_and(|url| url.starts_with("postgres://") || url.starts_with("postgresql://"));
    if is_postgres {
        return Ok((StoreSetting::Postgres(Secret::new(value)), Some(origin)));
    }
    Err(match origin {
        SecretOrigin::Literal => format!("the store must be {FORMS}"),
        _ => format!("`{text}` holds neither `sqlite` nor a PostgreSQL URL; it must hold {FORMS}"),
    })
}

/// Whether `name` can name an instance: 1 to 63 letters, digits, `.`, `_` and `-`; else why not.
pub fn valid_instance(name: &str) -> Result<(), String> {
    const RULE: &str = "1 to 63 letters, digits, `.`, `_` and `-`, such as `web-1`";
    if name.is_empty() {
        return Err(format!("the instance name is empty; use {RULE}"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._-".contains(*c)))
    {
        return Err(format!(
            "the instance name has `{}`; use {RULE}",
            bad.escape_debug()
        ));
    }
    if name.chars().all(|c| c == '.') {
        return Err(format!(
            "the instance name `{name}` is only dots, which names a folder's parent or itself; use {RULE}"
        ));
    }
    if name.len() > MAX_INSTANCE_LEN {
        return Err(format!(
            "the instance name is {} characters long; use {RULE}",
            name.len()
        ));
    }
    Ok(())
}

/// This host's name when it is a valid instance name, else `hookrunner`.
pub fn default_instance() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .filter(|name| valid_instance(name).is_ok())
        .unwrap_or_else(|| FALLBACK_INSTANCE.to_string())
}

/// Why a lease is too short for a heartbeat, if it is.
fn lease_too_short(heartbeat: Duration, lease: Duration) -> Option<String> {
    let least = heartbeat.saturating_mul(2);
    (lease < least).then(|| {
        format!(
            "`lease` ({}) must be at least twice `heartbeat` ({}): an instance must miss at least one heartbeat before the others declare it dead; make `lease` at least {} or `heartbeat` shorter",
            humantime::format_duration(lease),
            humantime::format_duration(heartbeat),
            humantime::format_duration(least),
        )
    })
}

/// Decodes `store`, `instance`, `heartbeat` and `lease` from the fields of `server:`.
pub fn decode(decoder: &mut Decoder<'_>, fields: &Fields<'_>, settings: &mut ServerSettings) {
    if let Some((value, path)) = fields.get("store") {
        if let Some(text) = decoder.string(value, &path) {
            match parse_store(&text, &decoder.base_dir, decoder.lookup_env) {
                Ok((store, origin)) => {
                    if origin == Some(SecretOrigin::Literal) {
                        decoder.literal_secret(&path);
                    }
                    settings.store = store;
                }
                Err(message) => decoder.error(&path, Part::Value, message),
            }
        }
    }
    if let Some((value, path)) = fields.get("instance") {
        if let Some(name) = decoder.string(value, &path) {
            match valid_instance(&name) {
                Ok(()) => settings.instance = name,
                Err(message) => decoder.error(&path, Part::Value, message),
            }
        }
    }
    let mut duration = |key: &str, settings: &mut Duration| {
        let (value, path) = fields.get(key)?;
        match decoder.duration(value, &path)? {
            duration if duration.is_zero() => decoder.error(
                &path,
                Part::Value,
                format!("`{key}` must be longer than zero"),
            ),
            duration => *settings = duration,
        }
        Some(path)
    };
    let heartbeat = duration("heartbeat", &mut settings.heartbeat);
    let lease = duration("lease", &mut settings.lease);
    if let Some(path) = lease.or(heartbeat) {
        if let Some(message) = lease_too_short(settings.heartbeat, settings.lease) {
            decoder.error(&path, Part::Value, message);
        }
    }
}

#[cfg(test)]
#[path = "cluster_tests.rs"]
mod tests;
