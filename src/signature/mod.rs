//! Signature schemes: every provider verifies the raw body through the one [`Provider`] trait.
//!
//! Verification runs before anything parses the body, compares in constant time, and its errors
//! name what failed without ever showing the expected value.

mod bitbucket;
mod gitea;
mod github;
mod gitlab;
mod hmac;
mod scalr;
mod shopify;
mod slack;
mod standard;
mod stripe;
mod token;

use std::fmt;
use std::time::Duration;

use ::hmac::{Hmac, Mac};
use base64::Engine as _;
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use crate::request::{Headers, IdSource};
use crate::secret::Secrets;

pub use self::github::Github;
pub use self::gitlab::Gitlab;
pub use self::hmac::{Encoding, HmacScheme};
pub use self::scalr::Scalr;
pub use self::slack::Slack;
pub use self::standard::{decode_secret as decode_standard_secret, Standard};
pub use self::stripe::Stripe;
pub use self::token::{Token, TokenLocation};

/// The providers, with the settings each takes besides `secret`.
pub const PROVIDERS: &[(&str, &[&str])] = &[
    ("github", &["allow_sha1"]),
    ("gitlab", &[]),
    ("gitea", &[]),
    ("bitbucket", &[]),
    ("stripe", &["tolerance"]),
    ("slack", &["tolerance"]),
    ("standard", &["tolerance"]),
    ("shopify", &[]),
    ("scalr", &["tolerance"]),
    ("hmac", &["header", "algorithm", "encoding", "prefix"]),
    ("token", &["header", "query"]),
];

/// How far a signed timestamp may be from the server's clock, in either direction, by default.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// A provider's settings as written in a hook's `signature:` block (or given to `hookrunner sign`).
#[derive(Debug)]
pub struct ProviderSettings {
    pub name: String,
    pub secrets: Secrets,
    pub tolerance: Option<Duration>,
    pub allow_sha1: bool,
    pub header: Option<String>,
    pub query: Option<String>,
    pub algorithm: Option<Algorithm>,
    pub encoding: Option<Encoding>,
    pub prefix: Option<String>,
}

impl ProviderSettings {
    pub fn new(name: &str, secrets: Secrets) -> ProviderSettings {
        ProviderSettings {
            name: name.to_string(),
            secrets,
            tolerance: None,
            allow_sha1: false,
            header: None,
            query: None,
            algorithm: None,
            encoding: None,
            prefix: None,
        }
    }
}

/// Builds a provider from its settings; the error says what is missing or wrong.
pub fn build(settings: ProviderSettings) -> Result<Box<dyn Provider>, String> {
    let tolerance = settings.tolerance.unwrap_or(DEFAULT_TOLERANCE);
    let secrets = settings.secrets;
    Ok(match settings.name.as_str() {
        "github" => Box::new(Github {
            secrets,
            allow_sha1: settings.allow_sha1,
        }),
        "gitlab" => Box::new(Gitlab {
            secrets: sendable_tokens(secrets)?,
        }),
        "gitea" => Box::new(gitea::gitea(secrets)),
        "bitbucket" => Box::new(bitbucket::bitbucket(secrets)),
        "shopify" => Box::new(shopify::shopify(secrets)),
        "stripe" => Box::new(Stripe { secrets, tolerance }),
        "slack" => Box::new(Slack { secrets, tolerance }),
        "scalr" => Box::new(Scalr { secrets, tolerance }),
        "standard" => {
            let keys = secrets
                .iter()
                .map(standard::decode_secret)
                .collect::<Result<Vec<_>, _>>()?;
            Box::new(Standard {
                keys: Secrets(keys),
                tolerance,
            })
        }
        "hmac" => {
            let header = settings
                .header
                .ok_or("`hmac` needs `header:`, the header that carries the signature")?;
            Box::new(HmacScheme::custom(
                header,
                settings.algorithm.unwrap_or(Algorithm::Sha256),
                settings.encoding.unwrap_or(Encoding::Hex),
                settings.prefix.unwrap_or_default(),
                secrets,
            ))
        }
        "token" => {
            let secrets = sendable_tokens(secrets)?;
            let location = match (settings.header, settings.query) {
                (Some(header), None) => TokenLocation::Header(header),
                (None, Some(query)) => TokenLocation::Query(query),
                _ => return Err("`token` needs exactly one of `header:` or `query:`".into()),
            };
            Box::new(Token { location, secrets })
        }
        other => {
            let names: Vec<&str> = PROVIDERS.iter().map(|(name, _)| *name).collect();
            return Err(format!(
                "unknown signature provider `{other}`; known providers: {}",
                names.join(", ")
            ));
        }
    })
}

/// The parts of a request a signature may cover.
pub struct SignedRequest<'a> {
    pub headers: &'a Headers,
    pub query: &'a [(String, String)],
    pub body: &'a [u8],
    /// Seconds since the Unix epoch, for timestamped schemes.
    pub now: i64,
}

/// Why a request's signature was refused. Every variant answers 401.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("{0}")]
    Missing(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    TimestampOutOfTolerance(String),
}

impl SignatureError {
    /// The stable code clients and metrics see.
    pub fn code(&self) -> &'static str {
        match self {
            SignatureError::Missing(_) => "signature_missing",
            SignatureError::Invalid(_) => "signature_invalid",
            SignatureError::TimestampOutOfTolerance(_) => "timestamp_out_of_tolerance",
        }
    }
}

/// One provider's scheme, built from the hook's `signature:` block.
pub trait Provider: fmt::Debug + Send + Sync {
    /// The name used in the config, such as `github`.
    fn name(&self) -> &'static str;

    fn verify(&self, request: &SignedRequest<'_>) -> Result<(), SignatureError>;

    /// The headers the provider would send for `body`, signed with the first secret.
    /// `id` and `timestamp` are used by the schemes that sign them.
    fn sign(&self, body: &[u8], id: &str, timestamp: i64) -> Vec<(String, String)>;

    /// Where this provider names the event, first match wins.
    fn event_sources(&self) -> &'static [IdSource] {
        &[]
    }

    /// Where this provider puts its delivery id, first match wins.
    fn delivery_sources(&self) -> &'static [IdSource] {
        &[]
    }

    /// For a timestamped scheme whose requests may carry no delivery id: a key naming this very
    /// signed request, so a replay within the tolerance is a duplicate. It digests what the
    /// signature covers (timestamp and body), not the header's text, so a re-encoded header is
    /// the same request. Only for a request that `verify` accepted.
    fn replay_key(&self, _request: &SignedRequest<'_>) -> Option<String> {
        None
    }
}

/// A hook's signature requirement: a provider, any one of several, or `none` on purpose.
#[derive(Debug)]
pub enum Signature {
    None,
    Provider(Box<dyn Provider>),
    /// `signature: {any: [...]}`: the request passes when one of them verifies (adnanh/webhook's
    /// signature checks inside `or`).
    Any(Vec<Box<dyn Provider>>),
}

impl Signature {
    /// Verifies the request and returns the provider that accepted it (none for `none`), whose
    /// event and delivery ids the request then carries.
    ///
    /// For `any`, every entry is checked, each in constant time, so the time taken does not tell
    /// which one matched. When none does, the first entry's error that is not a missing header
    /// is returned (a header missing for one entry only means the request is not of that kind),
    /// or the first missing header when all are missing.
    pub fn verify(
        &self,
        request: &SignedRequest<'_>,
    ) -> Result<Option<&dyn Provider>, SignatureError> {
        match self {
            Signature::None => Ok(None),
            Signature::Provider(provider) => {
                provider.verify(request).map(|()| Some(provider.as_ref()))
            }
            Signature::Any(providers) => {
                let results: Vec<Result<(), SignatureError>> = providers
                    .iter()
                    .map(|provider| provider.verify(request))
                    .collect();
                if let Some(at) = results.iter().position(Result::is_ok) {
                    return Ok(Some(providers[at].as_ref()));
                }
                let errors: Vec<SignatureError> =
                    results.into_iter().filter_map(Result::err).collect();
                let chosen = errors
                    .iter()
                    .find(|error| !matches!(error, SignatureError::Missing(_)))
                    .or(errors.first())
                    .cloned();
                Err(chosen.unwrap_or_else(none_accepted))
            }
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Signature::None => "none",
            Signature::Provider(provider) => provider.name(),
            Signature::Any(_) => "any",
        }
    }

    /// See [`Provider::replay_key`]; for `any`, the key of the entry that verifies the request.
    pub fn replay_key(&self, request: &SignedRequest<'_>) -> Option<String> {
        match self {
            Signature::None => None,
            Signature::Provider(provider) => provider.replay_key(request),
            Signature::Any(_) => match self.verify(request) {
                Ok(Some(provider)) => provider.replay_key(request),
                _ => None,
            },
        }
    }
}

/// The error of an `any` with no entries, which the config never builds.
fn none_accepted() -> SignatureError {
    SignatureError::Missing("the request carries none of the signatures this hook accepts".into())
}

/// The replay key of a signed request: `signed:` and the SHA-256 of the signed parts, in hex.
pub fn replay_digest(parts: &[&[u8]]) -> String {
    let mut digest = Sha256::new();
    parts.iter().for_each(|part| digest.update(part));
    format!("signed:{}", hex::encode(digest.finalize()))
}

/// HMAC digest algorithms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn parse(text: &str) -> Option<Algorithm> {
        match text {
            "sha1" => Some(Algorithm::Sha1),
            "sha256" => Some(Algorithm::Sha256),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }

    /// The digest length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            Algorithm::Sha1 => 20,
            Algorithm::Sha256 => 32,
            Algorithm::Sha512 => 64,
        }
    }
}

/// Plain tokens travel in a header or a URL, which cannot carry surrounding whitespace (HTTP strips
/// it from header values), so such a token could never match: refuse it when the config loads.
fn sendable_tokens(secrets: Secrets) -> Result<Secrets, String> {
    let sendable = secrets.iter().all(|secret| {
        let bytes = secret.expose();
        !bytes.first().is_some_and(u8::is_ascii_whitespace)
            && !bytes.last().is_some_and(u8::is_ascii_whitespace)
    });
    if sendable {
        Ok(secrets)
    } else {
        Err(
            "a token with spaces or tabs at either end can never be sent in a header; remove them"
                .into(),
        )
    }
}

/// Computes HMAC(key, parts concatenated).
pub fn hmac_digest(algorithm: Algorithm, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    fn digest<M: Mac + ::hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        let mut mac = <M as ::hmac::digest::KeyInit>::new_from_slice(key)
            .expect("HMAC accepts keys of any length");
        parts.iter().for_each(|part| mac.update(part));
        mac.finalize().into_bytes().to_vec()
    }
    match algorithm {
        Algorithm::Sha1 => digest::<Hmac<sha1::Sha1>>(key, parts),
        Algorithm::Sha256 => digest::<Hmac<Sha256>>(key, parts),
        Algorithm::Sha512 => digest::<Hmac<Sha512>>(key, parts),
    }
}

/// How many signatures of a comma-separated list are tried, at most.
pub const MAX_LISTED: usize = 16;

/// The hex signatures of a header as adnanh/webhook reads them: a comma-separated list (the first
/// [`MAX_LISTED`]), each with or without `prefix`; those that do not decode to `length` bytes are
/// left out.
pub fn listed_hex(value: &str, prefix: &str, length: usize) -> Vec<Vec<u8>> {
    value
        .split(',')
        .take(MAX_LISTED)
        .map(str::trim)
        .filter_map(|listed| decode_hex(listed.strip_prefix(prefix).unwrap_or(listed), length))
        .collect()
}

/// Whether any of the secrets signs `parts` to `expected`, compared in constant time.
pub fn any_secret_signs(
    algorithm: Algorithm,
    secrets: &Secrets,
    parts: &[&[u8]],
    expected: &[u8],
) -> bool {
    any_secret_signs_one_of(algorithm, secrets, parts, &[expected])
}

/// Whether any of the secrets signs `parts` to any of the `candidates` (schemes that send several
/// signatures, such as Stripe's `v1=` list), each compared in constant time.
pub fn any_secret_signs_one_of<C: AsRef<[u8]>>(
    algorithm: Algorithm,
    secrets: &Secrets,
    parts: &[&[u8]],
    candidates: &[C],
) -> bool {
    secrets.iter().any(|secret| {
        let computed = hmac_digest(algorithm, secret.expose(), parts);
        candidates
            .iter()
            .any(|candidate| bool::from(candidate.as_ref().ct_eq(&computed)))
    })
}

/// Constant-time equality for plain tokens that does not reveal the length of the secret:
/// both sides are hashed first, so the comparison always runs over 32 bytes.
pub fn tokens_equal(given: &[u8], secret: &[u8]) -> bool {
    let given = Sha256::digest(given);
    let secret = Sha256::digest(secret);
    bool::from(given.as_slice().ct_eq(secret.as_slice()))
}

/// Decodes hex of exactly `len` bytes; anything else is `None`.
pub fn decode_hex(text: &str, len: usize) -> Option<Vec<u8>> {
    if text.len() != len * 2 {
        return None;
    }
    hex::decode(text).ok()
}

/// Decodes standard base64 of exactly `len` bytes; anything else is `None`.
pub fn decode_base64(text: &str, len: usize) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()
        .filter(|bytes| bytes.len() == len)
}

/// Parses a signed Unix timestamp and refuses it when it is more than `tolerance` from `now`,
/// in either direction. Call it only after the signature verified, so a forger learns nothing.
pub fn check_timestamp(
    text: &str,
    header: &str,
    now: i64,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let timestamp: i64 = text
        .trim()
        .parse()
        .map_err(|_| malformed(header, "<unix time>"))?;
    check_skew(timestamp, header, now, tolerance)
}

/// Refuses a signed time (seconds since the Unix epoch) more than `tolerance` from `now`, in
/// either direction; `header` names where it came from. Like [`check_timestamp`], only after the
/// signature verified.
pub fn check_skew(
    timestamp: i64,
    header: &str,
    now: i64,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let skew = now.saturating_sub(timestamp).unsigned_abs();
    if skew > tolerance.as_secs() {
        return Err(SignatureError::TimestampOutOfTolerance(format!(
            "the `{header}` timestamp is {skew}s away from the server's clock, beyond the {}s tolerance; check the clocks, or resend",
            tolerance.as_secs()
        )));
    }
    Ok(())
}

/// The text of a header the scheme needs, or `signature_missing` naming it.
pub fn required_header<'a>(headers: &'a Headers, name: &str) -> Result<&'a str, SignatureError> {
    match headers.get(name).map(str::trim) {
        Some(value) if !value.is_empty() => Ok(value),
        _ => Err(SignatureError::Missing(format!(
            "the request has no `{name}` header; configure the webhook's secret at the sender"
        ))),
    }
}

/// The `signature_invalid` error for a header whose signature does not verify.
pub fn mismatch(header: &str) -> SignatureError {
    SignatureError::Invalid(format!(
        "the `{header}` signature does not match the body; check that the sender and hookrunner share the same secret"
    ))
}

/// The `signature_invalid` error for a header that is not in the expected form.
pub fn malformed(header: &str, expected_form: &str) -> SignatureError {
    SignatureError::Invalid(format!(
        "the `{header}` header is not in the form `{expected_form}`"
    ))
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use crate::secret::Secret;

    pub fn secrets(values: &[&str]) -> Secrets {
        Secrets(values.iter().map(|value| Secret::new(*value)).collect())
    }

    /// Like [`check`], at a given time and without a query.
    pub fn check_at(
        provider: &dyn Provider,
        headers: &[(&str, &str)],
        body: &str,
        now: i64,
    ) -> &'static str {
        verify_at(provider, headers, &[], body, now)
    }

    /// Verifies `body` with the given headers and query, returning the error code or "ok".
    pub fn check(
        provider: &dyn Provider,
        headers: &[(&str, &str)],
        query: &[(&str, &str)],
        body: &str,
    ) -> &'static str {
        verify_at(provider, headers, query, body, 1_700_000_000)
    }

    fn verify_at(
        provider: &dyn Provider,
        headers: &[(&str, &str)],
        query: &[(&str, &str)],
        body: &str,
        now: i64,
    ) -> &'static str {
        let headers = Headers::new(
            headers
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string())),
        );
        let query: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let request = SignedRequest {
            headers: &headers,
            query: &query,
            body: body.as_bytes(),
            now,
        };
        match provider.verify(&request) {
            Ok(()) => "ok",
            Err(error) => error.code(),
        }
    }
}

#[cfg(test)]
mod any_tests {
    use super::test_support::secrets;
    use super::*;

    fn check(signature: &Signature, headers: &[(String, String)], body: &str) -> String {
        let headers = Headers::new(headers.iter().cloned());
        let request = SignedRequest {
            headers: &headers,
            query: &[],
            body: body.as_bytes(),
            now: 1_700_000_000,
        };
        match signature.verify(&request) {
            Ok(provider) => format!("ok {}", provider.map_or("none", |p| p.name())),
            Err(error) => error.code().to_string(),
        }
    }

    #[test]
    fn any_passes_when_one_entry_verifies_and_names_the_first_real_failure() {
        let github = || {
            Box::new(Github {
                secrets: secrets(&["gh"]),
                allow_sha1: false,
            })
        };
        let gitea = || Box::new(gitea::gitea(secrets(&["gt"])));
        let any = Signature::Any(vec![github(), gitea()]);
        let body = "{}";
        let github_signed = github().sign(body.as_bytes(), "", 0);
        let gitea_signed = gitea().sign(body.as_bytes(), "", 0);
        let wrong_gitea = gitea::gitea(secrets(&["nope"])).sign(body.as_bytes(), "", 0);
        let both: Vec<_> = github_signed.iter().chain(&wrong_gitea).cloned().collect();
        let cases: &[(&[(String, String)], &str)] = &[
            (&github_signed, "ok github"),
            (&gitea_signed, "ok gitea"),
            (&both, "ok github"),
            (&[], "signature_missing"),
            (&wrong_gitea, "signature_invalid"),
            (
                &[("X-Hub-Signature-256".to_string(), "sha256=00".to_string())],
                "signature_invalid",
            ),
        ];
        for (headers, expected) in cases {
            assert_eq!(check(&any, headers, body), *expected, "{headers:?}");
        }
        assert_eq!(check(&any, &github_signed, "{ }"), "signature_invalid");
        assert_eq!(check(&Signature::None, &[], body), "ok none");
    }
}
