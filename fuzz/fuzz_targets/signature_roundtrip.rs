//! `sign` then `verify` must agree, for every provider, secret, id, timestamp and body:
//!
//! - the headers `sign` makes verify, at any clock within the tolerance of the signed timestamp,
//!   and fail with `timestamp_out_of_tolerance` beyond it (timestamped providers only);
//! - a key rotation list verifies what its first secret signed;
//! - a body with one byte changed fails with `signature_invalid` (providers that sign the body);
//! - a provider with another secret refuses the signature;
//! - GitHub's SHA-1 header alone verifies only with `allow_sha1`.
//!
//! The input: control bytes read with `arbitrary::Unstructured` (provider, settings, lengths,
//! secret, id, prefix, timestamp, skew, which byte to flip), then the body (the rest).
//! Secrets of the token providers (`gitlab`, `token`) travel as header text, so they are limited to
//! printable ASCII without surrounding spaces, as an HTTP header keeps them; the `hmac` prefix and
//! Standard Webhooks id likewise.
#![no_main]

use std::time::Duration;

use arbitrary::{Result, Unstructured};
use hookrunner::secret::{Secret, Secrets};
use hookrunner::request::Headers;
use hookrunner::signature::{
    build, Algorithm, Encoding, Provider, ProviderSettings, SignatureError, SignedRequest,
    DEFAULT_TOLERANCE,
};
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 10] = [
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
];
/// Providers whose signature covers the body (`gitlab` and `token` send a fixed token).
const SIGNS_BODY: [&str; 8] = [
    "github",
    "gitea",
    "bitbucket",
    "stripe",
    "slack",
    "standard",
    "shopify",
    "hmac",
];
const TIMESTAMPED: [&str; 3] = ["stripe", "slack", "standard"];
const HMAC_HEADERS: [&str; 4] = [
    "X-Sig",
    "X-Signature",
    "x-hub-signature-256",
    "Authorization",
];

struct Case {
    name: &'static str,
    secret: Vec<u8>,
    rotation: Option<Vec<u8>>,
    allow_sha1: bool,
    tolerance: Option<u64>,
    header: String,
    token_in_query: bool,
    algorithm: Algorithm,
    encoding: Encoding,
    prefix: String,
    id: String,
    timestamp: i64,
    skew: i64,
    flip_at: usize,
    flip_mask: u8,
}

/// Printable ASCII with no space at either end, as an HTTP header value arrives; `fallback` when
/// nothing is left.
fn header_text(bytes: &[u8], fallback: &str) -> String {
    let text: String = bytes
        .iter()
        .filter(|b| (0x20..0x7f).contains(*b))
        .map(|b| *b as char)
        .collect();
    let text = text.trim();
    if text.is_empty() {
        fallback.to_string()
    } else {
        text.to_string()
    }
}

fn read_case(mut u: Unstructured<'_>) -> Result<(Case, &[u8])> {
    let name = NAMES[u.choose_index(NAMES.len())?];
    let flags: u8 = u.arbitrary()?;
    let secret_len = u.int_in_range(0..=40)?;
    let mut secret = u.bytes(secret_len)?.to_vec();
    let rotation_len = u.int_in_range(0..=16)?;
    let rotation = u.bytes(rotation_len)?.to_vec();
    let prefix_len = u.int_in_range(0..=8)?;
    let prefix = u.bytes(prefix_len)?.to_vec();
    let id_len = u.int_in_range(0..=24)?;
    let id = u.bytes(id_len)?.to_vec();
    let timestamp: i64 = u.arbitrary()?;
    let skew: i16 = u.arbitrary()?;
    let tolerance: u16 = u.arbitrary()?;
    let flip_at: u16 = u.arbitrary()?;
    let flip_mask: u8 = u.arbitrary()?;
    let body = u.take_rest();

    let is_token = matches!(name, "gitlab" | "token");
    if is_token {
        secret = header_text(&secret, "s").into_bytes();
    }
    let rotation = (flags & 0x01 != 0).then(|| {
        if is_token {
            header_text(&rotation, "rotated").into_bytes()
        } else {
            rotation
        }
    });
    let case = Case {
        name,
        secret,
        rotation,
        allow_sha1: flags & 0x02 != 0,
        tolerance: (flags & 0x04 != 0).then_some(u64::from(tolerance)),
        header: HMAC_HEADERS[usize::from(flags >> 3) % HMAC_HEADERS.len()].to_string(),
        token_in_query: flags & 0x20 != 0,
        algorithm: [Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512]
            [usize::from(flags >> 6) % 3],
        encoding: if flags & 0x80 != 0 {
            Encoding::Base64
        } else {
            Encoding::Hex
        },
        prefix: header_text(&prefix, ""),
        id: header_text(&id, "msg_1"),
        timestamp,
        skew: i64::from(skew),
        flip_at: usize::from(flip_at),
        flip_mask: if flip_mask == 0 { 1 } else { flip_mask },
    };
    Ok((case, body))
}

/// The secret as the provider's config would hold it: Standard Webhooks keys are `whsec_<base64>`.
fn secret_text(name: &str, key: &[u8]) -> Secret {
    if name == "standard" {
        use base64::Engine as _;
        let key: &[u8] = if key.is_empty() { b"\x01" } else { key };
        Secret::new(format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(key)
        ))
    } else {
        Secret::new(key)
    }
}

fn provider(case: &Case, secrets: Vec<Vec<u8>>, allow_sha1: bool) -> Box<dyn Provider> {
    let secrets = Secrets(
        secrets
            .iter()
            .map(|key| secret_text(case.name, key))
            .collect(),
    );
    let mut settings = ProviderSettings::new(case.name, secrets);
    settings.allow_sha1 = allow_sha1;
    settings.tolerance = case.tolerance.map(Duration::from_secs);
    match case.name {
        "hmac" => {
            settings.header = Some(case.header.clone());
            settings.algorithm = Some(case.algorithm);
            settings.encoding = Some(case.encoding);
            settings.prefix = Some(case.prefix.clone());
        }
        "token" if case.token_in_query => settings.query = Some("token".into()),
        "token" => settings.header = Some("X-Token".into()),
        _ => {}
    }
    build(settings).unwrap_or_else(|error| panic!("build {}: {error}", case.name))
}

fn verify(
    provider: &dyn Provider,
    headers: &[(String, String)],
    query: &[(String, String)],
    body: &[u8],
    now: i64,
) -> std::result::Result<(), SignatureError> {
    let headers = Headers::new(headers.iter().cloned());
    provider.verify(&SignedRequest {
        headers: &headers,
        query,
        body,
        now,
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok((case, body)) = read_case(Unstructured::new(data)) else {
        return;
    };
    let name = case.name;
    let mut secrets = vec![case.secret.clone()];
    secrets.extend(case.rotation.clone());
    let signer = provider(&case, secrets.clone(), case.allow_sha1);
    let headers = signer.sign(body, &case.id, case.timestamp);
    // A query token is not a header: the sender puts the secret in the URL.
    let query: Vec<(String, String)> = if name == "token" && case.token_in_query {
        vec![(
            "token".to_string(),
            String::from_utf8(case.secret.clone()).expect("header_text is ASCII"),
        )]
    } else {
        Vec::new()
    };
    let context = || format!("{name}: headers {headers:?}, query {query:?}, body {body:?}");

    // 1. What was signed verifies at the signing time.
    if let Err(error) = verify(signer.as_ref(), &headers, &query, body, case.timestamp) {
        panic!("sign then verify failed: {error:?}; {}", context());
    }

    // 2. The clock: within the tolerance passes, beyond it fails (timestamped providers only).
    if let Some(now) = case.timestamp.checked_add(case.skew) {
        let tolerance = case.tolerance.unwrap_or(DEFAULT_TOLERANCE.as_secs());
        let result = verify(signer.as_ref(), &headers, &query, body, now);
        let within = case.skew.unsigned_abs() <= tolerance;
        match (TIMESTAMPED.contains(&name) && !within, result) {
            (false, Ok(())) => {}
            (true, Err(SignatureError::TimestampOutOfTolerance(_))) => {}
            (expect_stale, result) => panic!(
                "now = timestamp {:+}s, tolerance {tolerance}s, expected stale = {expect_stale}, got {result:?}; {}",
                case.skew,
                context()
            ),
        }
    }

    // 3. A changed body byte fails the providers that sign the body.
    if !body.is_empty() {
        let mut changed = body.to_vec();
        let at = case.flip_at % changed.len();
        changed[at] ^= case.flip_mask;
        let result = verify(signer.as_ref(), &headers, &query, &changed, case.timestamp);
        match (SIGNS_BODY.contains(&name), result) {
            (true, Err(SignatureError::Invalid(_))) | (false, Ok(())) => {}
            (signs_body, result) => panic!(
                "body byte {at} ^= {:#04x}: signs the body = {signs_body}, got {result:?}; {}",
                case.flip_mask,
                context()
            ),
        }
    }

    // 4. Another secret refuses it (one that differs from every secret of the signer).
    let mut other = case.secret.clone();
    other.push(b'x');
    if !secrets.contains(&other) {
        let stranger = provider(&case, vec![other], case.allow_sha1);
        if let Ok(()) = verify(stranger.as_ref(), &headers, &query, body, case.timestamp) {
            panic!(
                "a provider with another secret accepted the signature; {}",
                context()
            );
        }
    }

    // 5. GitHub: the SHA-1 header alone passes only when allowed.
    if name == "github" {
        let sha1_only: Vec<(String, String)> = headers
            .iter()
            .filter(|(header, _)| header.eq_ignore_ascii_case("X-Hub-Signature"))
            .cloned()
            .collect();
        for allow in [false, true] {
            let github = provider(&case, secrets.clone(), allow);
            let result = verify(github.as_ref(), &sha1_only, &[], body, case.timestamp);
            match (allow, result) {
                (true, Ok(())) | (false, Err(SignatureError::Missing(_))) => {}
                (allow, result) => panic!(
                    "SHA-1 only, allow_sha1 = {allow}: got {result:?}; {}",
                    context()
                ),
            }
        }
    }
});
