//! The optional `server:` section and its defaults.

use std::time::Duration;

use serde_yaml::Value;

use super::decode::Decoder;
use super::source_map::{Part, YamlPath};
use super::{LogFormat, Retention, ServerSettings};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9000";
const KEYS: &[&str] = &[
    "listen",
    "base_path",
    "state_dir",
    "trusted_proxies",
    "max_body",
    "body_timeout",
    "max_jobs",
    "max_pending",
    "retention",
    "shutdown_grace",
    "admin_token",
    "log_format",
];

pub fn defaults(decoder: &Decoder<'_>) -> ServerSettings {
    ServerSettings {
        listen: vec![DEFAULT_LISTEN.to_string()],
        base_path: "/hooks".into(),
        state_dir: decoder.base_dir().join(".hookrunner"),
        trusted_proxies: Vec::new(),
        max_body: 10 << 20,
        body_timeout: Duration::from_secs(60),
        max_jobs: 8,
        max_pending: 10_000,
        retention: Retention {
            max_age: Duration::from_secs(30 * 86_400),
            max_jobs: 10_000,
        },
        shutdown_grace: Duration::from_secs(30),
        admin_token: None,
        log_format: LogFormat::Text,
    }
}

/// Decodes `server:`; `None` when it has errors (they are recorded in the decoder).
pub fn decode(
    decoder: &mut Decoder<'_>,
    section: Option<(&Value, YamlPath)>,
) -> Option<ServerSettings> {
    let mut settings = defaults(decoder);
    let Some((value, path)) = section else {
        return Some(settings);
    };
    let errors_before = decoder.diagnostics.len();
    let fields = decoder.mapping(value, &path, "`server`", KEYS)?;
    if let Some((value, path)) = fields.get("listen") {
        if let Some(listen) = decoder.string_list(value, &path) {
            if listen.is_empty() {
                decoder.error(
                    &path,
                    Part::Value,
                    "`listen` needs at least one address, such as `127.0.0.1:9000`",
                );
            }
            settings.listen = listen;
        }
    }
    if let Some((value, path)) = fields.get("base_path") {
        if let Some(base) = decoder.string(value, &path) {
            if !base.starts_with('/') {
                decoder.error(
                    &path,
                    Part::Value,
                    format!("`base_path` must start with `/`, as in `/{base}`"),
                );
            }
            settings.base_path = base.trim_end_matches('/').to_string();
        }
    }
    if let Some((value, path)) = fields.get("state_dir") {
        if let Some(dir) = decoder.file_path(value, &path) {
            settings.state_dir = dir;
        }
    }
    if let Some((value, path)) = fields.get("trusted_proxies") {
        let entries = decoder.string_list(value, &path).unwrap_or_default();
        for (index, entry) in entries.iter().enumerate() {
            match parse_network(entry) {
                Some(network) => settings.trusted_proxies.push(network),
                None => decoder.error(
                    &path.index(index),
                    Part::Value,
                    format!(
                        "`{entry}` is not an address or CIDR range, such as `10.0.0.0/8` or `::1`"
                    ),
                ),
            }
        }
    }
    if let Some((value, path)) = fields.get("max_body") {
        settings.max_body = decoder.size(value, &path).unwrap_or(settings.max_body);
    }
    if let Some((value, path)) = fields.get("body_timeout") {
        match decoder.duration(value, &path) {
            Some(timeout) if timeout.is_zero() => decoder.error(
                &path,
                Part::Value,
                "`body_timeout` must be longer than zero, such as `60s`",
            ),
            Some(timeout) => settings.body_timeout = timeout,
            None => {}
        }
    }
    if let Some((value, path)) = fields.get("max_jobs") {
        settings.max_jobs = decoder.number(value, &path, 1, 100_000).unwrap_or(8) as usize;
    }
    if let Some((value, path)) = fields.get("max_pending") {
        settings.max_pending = decoder
            .number(value, &path, 1, 10_000_000)
            .unwrap_or(10_000) as usize;
    }
    if let Some((value, path)) = fields.get("retention") {
        if let Some(retention) =
            decoder.mapping(value, &path, "`retention`", &["max_age", "max_jobs"])
        {
            if let Some((value, path)) = retention.get("max_age") {
                settings.retention.max_age = decoder
                    .duration(value, &path)
                    .unwrap_or(settings.retention.max_age);
            }
            if let Some((value, path)) = retention.get("max_jobs") {
                settings.retention.max_jobs = decoder
                    .number(value, &path, 1, u32::MAX as u64)
                    .unwrap_or(10_000) as usize;
            }
        }
    }
    if let Some((value, path)) = fields.get("shutdown_grace") {
        settings.shutdown_grace = decoder
            .duration(value, &path)
            .unwrap_or(settings.shutdown_grace);
    }
    if let Some((value, path)) = fields.get("admin_token") {
        settings.admin_token = decoder.secret(value, &path);
    }
    if let Some((value, path)) = fields.get("log_format") {
        settings.log_format = decoder
            .choice(
                value,
                &path,
                &[("text", LogFormat::Text), ("json", LogFormat::Json)],
            )
            .unwrap_or(LogFormat::Text);
    }
    let clean = decoder
        .diagnostics
        .iter()
        .skip(errors_before)
        .all(|d| d.severity != super::diagnostic::Severity::Error);
    clean.then_some(settings)
}

/// An address or CIDR range; a bare address is a range of one.
pub fn parse_network(text: &str) -> Option<ipnet::IpNet> {
    let text = text.trim();
    text.parse().ok().or_else(|| {
        text.parse::<std::net::IpAddr>()
            .ok()
            .map(ipnet::IpNet::from)
    })
}
