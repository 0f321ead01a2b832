//! Every signature provider's `verify` over arbitrary headers, query, body and clock: it must never
//! panic, whatever the request carries.
//!
//! The input is an HTTP-like text, so seeds can be real deliveries:
//!
//! ```text
//! @now: 1700000000            # the server's clock (default 1700000000)
//! @ts: 1699999990             # the timestamp `@sign` signs with (default: @now)
//! @id: msg_1                  # the id `@sign` signs with (Standard Webhooks)
//! @sign: stripe               # append the headers this provider's `sign` makes for the body
//! @secret: other              # one more secret for every provider (key rotation)
//! @tolerance: 300             # seconds, for the timestamped providers
//! @header: X-Sig              # the header of `hmac` and `token`
//! @prefix: sha256=            # the prefix of `hmac`
//! @algorithm: sha512          # the algorithm of `hmac`
//! @encoding: base64           # the encoding of `hmac`
//! @query: token=abc           # one query pair (`token` reads `token` from the query)
//! Stripe-Signature: t=...,v1=...
//!
//! {"body": "raw bytes after the first blank line"}
//! ```
//!
//! Header lines are `name: value`; the headers a `@sign` line adds come at its place, so a header
//! written above it wins (the first value of a header is the one read).
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use hookrunner::secret::{Secret, Secrets};
use hookrunner::request::Headers;
use hookrunner::signature::{
    build, Algorithm, Encoding, Provider, ProviderSettings, SignedRequest,
};
use libfuzzer_sys::fuzz_target;

const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[derive(Default)]
struct Options {
    now: Option<i64>,
    ts: Option<i64>,
    id: Option<String>,
    extra_secret: Option<String>,
    tolerance: Option<u64>,
    header: Option<String>,
    prefix: Option<String>,
    algorithm: Option<Algorithm>,
    encoding: Option<Encoding>,
}

/// Every provider, with the settings the input asks for.
fn providers(options: &Options) -> Vec<Box<dyn Provider>> {
    let secrets = |first: &str| {
        let mut list = vec![Secret::new(first)];
        if let Some(extra) = &options.extra_secret {
            list.push(Secret::new(extra.as_bytes()));
        }
        Secrets(list)
    };
    let mut all = Vec::new();
    let names = [
        "github",
        "github",
        "gitlab",
        "gitea",
        "bitbucket",
        "stripe",
        "slack",
        "standard",
        "shopify",
        "hmac",
        "token",
        "token",
    ];
    for (index, name) in names.into_iter().enumerate() {
        let first = if name == "standard" {
            STANDARD_SECRET
        } else {
            "s"
        };
        let mut settings = ProviderSettings::new(name, secrets(first));
        settings.tolerance = options.tolerance.map(Duration::from_secs);
        settings.allow_sha1 = index == 1;
        match (name, index) {
            ("hmac", _) => {
                settings.header = Some(options.header.clone().unwrap_or_else(|| "X-Sig".into()));
                settings.prefix = options.prefix.clone();
                settings.algorithm = options.algorithm;
                settings.encoding = options.encoding;
            }
            ("token", 10) => {
                settings.header = Some(options.header.clone().unwrap_or_else(|| "X-Token".into()))
            }
            ("token", _) => settings.query = Some("token".into()),
            _ => {}
        }
        // `standard` refuses a rotation secret that is not `whsec_<base64>`: keep the others.
        if let Ok(provider) = build(settings) {
            all.push(provider);
        }
    }
    all
}

fn provider_named<'a>(all: &'a [Box<dyn Provider>], name: &str) -> Option<&'a dyn Provider> {
    all.iter()
        .find(|provider| provider.name() == name)
        .map(|provider| provider.as_ref())
}

fuzz_target!(|data: &[u8]| {
    let (head, body) = split_head(data);
    let head = String::from_utf8_lossy(head);
    let mut options = Options::default();
    // Header lines in order; `@sign` lines are placeholders filled once the providers exist.
    let mut lines: Vec<Line> = Vec::new();
    let mut query: Vec<(String, String)> = Vec::new();
    for line in head.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.strip_prefix(' ').unwrap_or(value);
        match name {
            "@now" => options.now = value.trim().parse().ok(),
            "@ts" => options.ts = value.trim().parse().ok(),
            "@id" => options.id = Some(value.to_string()),
            "@secret" => options.extra_secret = Some(value.to_string()),
            "@tolerance" => options.tolerance = value.trim().parse().ok(),
            "@header" => options.header = Some(value.to_string()),
            "@prefix" => options.prefix = Some(value.to_string()),
            "@algorithm" => options.algorithm = Algorithm::parse(value.trim()),
            "@encoding" => {
                options.encoding = match value.trim() {
                    "hex" => Some(Encoding::Hex),
                    "base64" => Some(Encoding::Base64),
                    _ => None,
                }
            }
            "@query" => {
                let (key, val) = value.split_once('=').unwrap_or((value, ""));
                query.push((key.to_string(), val.to_string()));
            }
            "@sign" => lines.push(Line::Sign(value.trim().to_string())),
            _ => lines.push(Line::Header(name.to_string(), value.to_string())),
        }
    }

    let all = providers(&options);
    let now = options.now.unwrap_or(1_700_000_000);
    let mut pairs: Vec<(String, String)> = Vec::new();
    for line in lines {
        match line {
            Line::Header(name, value) => pairs.push((name, value)),
            Line::Sign(name) => {
                if let Some(provider) = provider_named(&all, &name) {
                    let id = options.id.as_deref().unwrap_or("msg_1");
                    pairs.extend(provider.sign(body, id, options.ts.unwrap_or(now)));
                }
            }
        }
    }
    let headers = Headers::new(pairs);
    let request = SignedRequest {
        headers: &headers,
        query: &query,
        body,
        now,
    };
    for provider in &all {
        let result = provider.verify(&request);
        if debug() {
            eprintln!("{:>9}: {result:?}", provider.name());
        }
        if let Err(error) = result {
            // The message and code reach the client: building them must not panic either.
            let _ = (error.code(), error.to_string());
        }
        let _ = (provider.event_sources(), provider.delivery_sources());
    }
});

/// `HOOKRUNNER_FUZZ_DEBUG=1` prints each provider's verdict (to check what a seed reaches).
fn debug() -> bool {
    static DEBUG: OnceLock<bool> = OnceLock::new();
    *DEBUG.get_or_init(|| std::env::var_os("HOOKRUNNER_FUZZ_DEBUG").is_some())
}

enum Line {
    Header(String, String),
    Sign(String),
}

/// Splits at the first blank line: the head above it, the raw body below.
fn split_head(data: &[u8]) -> (&[u8], &[u8]) {
    for (at, window) in data.windows(2).enumerate() {
        if window == b"\n\n" {
            return (&data[..at], &data[at + 2..]);
        }
        if window == b"\n\r" && data.get(at + 2) == Some(&b'\n') {
            return (&data[..at], &data[at + 3..]);
        }
    }
    (data, &[])
}
