//! The optional `server:` section and its defaults.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net};
use serde_yaml::Value;

use super::decode::Decoder;
use super::source_map::{Part, YamlPath};
use super::{cluster, notify, LogFormat, Retention, ServerSettings, StoreSetting};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9000";

/// The first path segments hookrunner answers itself whatever `base_path` says (the routes
/// `http::configure` and `ui::scope` register); keep it in step with them. They are matched
/// before the hooks, so a hook served under one of them could never be reached.
pub const FIXED_ROUTES: &[&str] = &["healthz", "readyz", "metrics", "instances", "jobs", "ui"];

/// The fixed route that a request path (`/jobs/deploy`, or a hook id) would reach first: the one
/// its first segment names, compared exactly as the router does.
pub fn fixed_route_of(path: &str) -> Option<&'static str> {
    let first = path.trim_start_matches('/').split('/').next()?;
    FIXED_ROUTES.iter().copied().find(|route| *route == first)
}
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
    "store",
    "instance",
    "heartbeat",
    "lease",
    "notify",
    "public_url",
    "ui",
    "rate_limit",
    "tls",
];

pub fn defaults(decoder: &Decoder<'_>) -> ServerSettings {
    ServerSettings {
        listen: vec![DEFAULT_LISTEN.to_string()],
        base_path: "/hooks".into(),
        state_dir: decoder.base_dir().join(".hookrunner"),
        trusted_proxies: TrustedProxies::default(),
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
        store: StoreSetting::Sqlite,
        instance: cluster::default_instance(),
        heartbeat: cluster::DEFAULT_HEARTBEAT,
        lease: cluster::DEFAULT_LEASE,
        notify: Arc::from([]),
        public_url: None,
        ui: true,
        rate_limit: None,
        tls: None,
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
            let base = base.trim_end_matches('/');
            if let Some(route) = fixed_route_of(base) {
                decoder.error(
                    &path,
                    Part::Value,
                    format!("`base_path` `{base}` starts with `/{route}`, hookrunner's own route, which answers first, so no hook under it could be reached; choose another, such as `/hooks`"),
                );
            }
            settings.base_path = base.to_string();
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
            let trusted = &mut settings.trusted_proxies;
            match (entry.trim(), parse_network(entry)) {
                ("unix", _) => trusted.unix = true,
                (_, Some(network)) => trusted.networks.push(network),
                (text, None) if text.starts_with("unix:") => decoder.error(
                    &path.index(index),
                    Part::Value,
                    format!("`{entry}`: write `unix` alone; it trusts whoever connects to any `unix:` listener"),
                ),
                (_, None) => decoder.error(
                    &path.index(index),
                    Part::Value,
                    format!(
                        "`{entry}` is not an address or CIDR range, such as `10.0.0.0/8` or `::1`, nor `unix` (the proxy on a `unix:` listener)"
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
    cluster::decode(decoder, &fields, &mut settings);
    if let Some((value, path)) = fields.get("notify") {
        settings.notify = notify::decode_list(decoder, value, &path).unwrap_or(settings.notify);
    }
    if let Some((value, path)) = fields.get("public_url") {
        settings.public_url = decode_public_url(decoder, value, &path);
    }
    if let Some((value, path)) = fields.get("ui") {
        settings.ui = decoder.bool(value, &path).unwrap_or(true);
    }
    if let Some(Some(limit)) =
        super::rate_limit::decode(decoder, &fields, super::rate_limit::Scope::Server)
    {
        settings.rate_limit = Some(limit);
        if let (true, Some((_, path))) =
            (sees_no_client_address(&settings), fields.get("rate_limit"))
        {
            decoder.warning(
                &path.key("per_ip"),
                Part::Key,
                "`per_ip` counts all clients as one: every `listen` address is a `unix:` socket and `server.trusted_proxies` does not list `unix`, so no client address is known; add `unix` to `trusted_proxies` if the proxy in front sets `X-Forwarded-For`, or limit each hook with `per_hook`",
            );
        }
    }
    let tls_given = fields.get("tls").is_some();
    if let Some((value, path)) = fields.get("tls") {
        settings.tls = super::tls::decode(decoder, value, &path);
    }
    if let Some((_, path)) = fields.get("listen") {
        super::tls::check_listeners(decoder, &settings.listen, &path, tls_given);
    }
    let clean = decoder
        .diagnostics
        .iter()
        .skip(errors_before)
        .all(|d| d.severity != super::diagnostic::Severity::Error);
    clean.then_some(settings)
}

/// `public_url`: an `http` or `https` URL with a host and nothing after its path, kept without
/// its trailing `/`.
fn decode_public_url(
    decoder: &mut Decoder<'_>,
    value: &serde_yaml::Value,
    path: &YamlPath,
) -> Option<String> {
    const FORM: &str =
        "write the address people open this server at, such as `https://hooks.example.com`";
    let text = decoder.string(value, path)?;
    let refusal = match url::Url::parse(text.trim()) {
        Err(error) => Some(format!("`public_url` is not a URL ({error}); {FORM}")),
        Ok(url) if !matches!(url.scheme(), "http" | "https") || !url.has_host() => Some(format!(
            "`public_url` must be an `http://` or `https://` URL with a host; {FORM}"
        )),
        Ok(url) if !url.username().is_empty() || url.password().is_some() => {
            decoder.hide(path);
            Some("`public_url` holds a user or a password, which would be shown in every link; remove them".to_string())
        }
        Ok(url) if url.query().is_some() || url.fragment().is_some() => Some(format!(
            "`public_url` has a `?query` or a `#fragment`; {FORM}"
        )),
        Ok(url) => return Some(url.as_str().trim_end_matches('/').to_string()),
    };
    if let Some(message) = refusal {
        decoder.error(path, Part::Value, message);
    }
    None
}

/// Who may speak for the client (`server.trusted_proxies`): proxy addresses and ranges, and, with
/// `unix`, whoever connects to a `unix:` listener.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    pub networks: Vec<IpNet>,
    pub unix: bool,
}

impl TrustedProxies {
    /// Whether an address is a trusted proxy's; an IPv4-mapped one counts as the IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.networks.iter().any(|network| network.contains(&ip))
    }
}

/// An address or CIDR range; a bare address is a range of one. An IPv4-mapped range
/// (`::ffff:10.0.0.0/104`) is the IPv4 range, since addresses are compared as IPv4.
pub fn parse_network(text: &str) -> Option<IpNet> {
    let text = text.trim();
    let network = text
        .parse()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))?;
    Some(match network {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => v6
            .addr()
            .to_ipv4_mapped()
            .and_then(|v4| Ipv4Net::new(v4, v6.prefix_len() - 96).ok())
            .map_or(network, IpNet::V4),
        network => network,
    })
}

/// Whether every listener is a unix socket that no trusted proxy speaks for, so that no client
/// address is ever known (`check` warns about rules on `request.remote_ip` then).
pub fn sees_no_client_address(settings: &ServerSettings) -> bool {
    !settings.trusted_proxies.unix
        && settings
            .listen
            .iter()
            .all(|address| address.starts_with("unix:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_networks_and_takes_ipv4_mapped_ones_as_ipv4() {
        let cases = [
            ("10.0.0.0/8", Some("10.0.0.0/8")),
            (" 192.0.2.1 ", Some("192.0.2.1/32")),
            ("::1", Some("::1/128")),
            ("2001:db8::/32", Some("2001:db8::/32")),
            ("::ffff:10.0.0.0/104", Some("10.0.0.0/8")),
            ("::ffff:127.0.0.1", Some("127.0.0.1/32")),
            ("::/0", Some("::/0")),
            ("unix", None),
            ("localhost", None),
            ("10.0.0.0/33", None),
        ];
        for (text, expected) in cases {
            let got = parse_network(text).map(|network| network.to_string());
            assert_eq!(got.as_deref(), expected, "{text}");
        }
        let trusted = TrustedProxies {
            networks: vec!["127.0.0.1/32".parse().unwrap()],
            unix: false,
        };
        assert!(trusted.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!trusted.contains("::1".parse().unwrap()));
    }
}
