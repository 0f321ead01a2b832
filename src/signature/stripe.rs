//! Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]`, an HMAC-SHA256 of `"{t}.{body}"`
//! with the endpoint secret used exactly as given (`whsec_...` included); any `v1` may match.

use std::time::Duration;

use super::{
    any_secret_signs_one_of, check_timestamp, decode_hex, hmac_digest, malformed, mismatch,
    replay_digest, required_header, Algorithm, Provider, SignatureError, SignedRequest,
};
use crate::request::IdSource;
use crate::secret::Secrets;

const HEADER: &str = "Stripe-Signature";
const FORM: &str = "t=<unix time>,v1=<hex>";

#[derive(Debug)]
pub struct Stripe {
    pub secrets: Secrets,
    pub tolerance: Duration,
}

impl Provider for Stripe {
    fn name(&self) -> &'static str {
        "stripe"
    }

    fn verify(&self, request: &SignedRequest<'_>) -> Result<(), SignatureError> {
        let value = required_header(request.headers, HEADER)?;
        let mut timestamp = None;
        let mut signatures = Vec::new();
        for field in value.split(',') {
            let (key, value) = field
                .trim()
                .split_once('=')
                .ok_or_else(|| malformed(HEADER, FORM))?;
            match key {
                "t" if timestamp.is_some() => return Err(malformed(HEADER, FORM)),
                "t" => timestamp = Some(value),
                // Entries that are not 32 bytes of hex can never match; they are skipped like other schemes (`v0`).
                "v1" => signatures.extend(decode_hex(value, 32)),
                _ => {}
            }
        }
        let timestamp = timestamp.ok_or_else(|| malformed(HEADER, FORM))?;
        if signatures.is_empty() {
            return Err(malformed(HEADER, FORM));
        }
        let signed = [timestamp.as_bytes(), b".", request.body];
        let matched =
            any_secret_signs_one_of(Algorithm::Sha256, &self.secrets, &signed, &signatures);
        if !matched {
            return Err(mismatch(HEADER));
        }
        check_timestamp(timestamp, HEADER, request.now, self.tolerance)
    }

    fn sign(&self, body: &[u8], _id: &str, timestamp: i64) -> Vec<(String, String)> {
        let Some(secret) = self.secrets.iter().next() else {
            return Vec::new();
        };
        let timestamp = timestamp.to_string();
        let digest = hmac_digest(
            Algorithm::Sha256,
            secret.expose(),
            &[timestamp.as_bytes(), b".", body],
        );
        vec![(
            HEADER.to_string(),
            format!("t={timestamp},v1={}", hex::encode(digest)),
        )]
    }

    fn event_sources(&self) -> &'static [IdSource] {
        &[IdSource::Payload("type")]
    }

    fn delivery_sources(&self) -> &'static [IdSource] {
        &[IdSource::Payload("id")]
    }

    /// For events without an `id`: the signed `t` and body (verify allows one `t` only).
    fn replay_key(&self, request: &SignedRequest<'_>) -> Option<String> {
        let value = required_header(request.headers, HEADER).ok()?;
        let timestamp = value
            .split(',')
            .find_map(|field| field.trim().strip_prefix("t="))?;
        Some(replay_digest(&[timestamp.as_bytes(), b".", request.body]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::test_support::{check, secrets};

    #[test]
    fn verifies_stripe_signatures() {
        // printf '1700000000.{"id":"evt_1","type":"payment_intent.succeeded"}' | openssl dgst -sha256 -hmac whsec_test_secret
        let body = r#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;
        let v1 = "22d8dc182f5c588077683bd378368e29765bfe5df2560112b4f28fef120f0e31";
        let other = "0".repeat(64);
        let provider = Stripe {
            secrets: secrets(&["whsec_rotated", "whsec_test_secret"]),
            tolerance: Duration::from_secs(300),
        };
        let header = |value: String| vec![("Stripe-Signature", value)];
        let cases: Vec<(Vec<(&str, String)>, &str, &str)> = vec![
            (header(format!("t=1700000000,v1={v1}")), body, "ok"),
            (
                header(format!("t=1700000000,v1={other},v1={v1}")),
                body,
                "ok",
            ),
            (
                header(format!("t=1700000000,v0={other},v1={v1}")),
                body,
                "ok",
            ),
            (header(format!("v1={v1},t=1700000000")), body, "ok"),
            (
                header(format!("t=1700000000,v1={v1}")),
                "{}",
                "signature_invalid",
            ),
            (
                header(format!("t=1700000001,v1={v1}")),
                body,
                "signature_invalid",
            ),
            (
                header(format!("t=1700000000,v1={other}")),
                body,
                "signature_invalid",
            ),
            (header(format!("v1={v1}")), body, "signature_invalid"),
            (header("t=1700000000".into()), body, "signature_invalid"),
            (
                header(format!("t=1700000000,t=1700000000,v1={v1}")),
                body,
                "signature_invalid",
            ),
            (
                header(format!("t=1700000000,v1={}", &v1[1..])),
                body,
                "signature_invalid",
            ),
            (header(format!("t=abc,v1={v1}")), body, "signature_invalid"),
            (header("garbage".into()), body, "signature_invalid"),
            (header(String::new()), body, "signature_missing"),
            (vec![], body, "signature_missing"),
        ];
        for (headers, body, expected) in cases {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            assert_eq!(
                check(&provider, &headers, &[], body),
                expected,
                "{headers:?}"
            );
        }
        assert_eq!(
            provider.sign(body.as_bytes(), "", 1_700_000_000)[0].1,
            format!(
                "t=1700000000,v1={}",
                hex::encode(hmac_digest(
                    Algorithm::Sha256,
                    b"whsec_rotated",
                    &[b"1700000000.", body.as_bytes()]
                ))
            )
        );
    }

    #[test]
    fn a_stale_or_future_timestamp_is_refused_even_when_signed() {
        let provider = Stripe {
            secrets: secrets(&["s"]),
            tolerance: Duration::from_secs(300),
        };
        for (timestamp, expected) in [
            (1_700_000_000 - 301, "timestamp_out_of_tolerance"),
            (1_700_000_000 + 301, "timestamp_out_of_tolerance"),
            (1_700_000_000 - 299, "ok"),
            (1_700_000_000 + 299, "ok"),
        ] {
            let (name, value) = provider.sign(b"{}", "", timestamp).remove(0);
            assert_eq!(
                check(&provider, &[(&name, &value)], &[], "{}"),
                expected,
                "{timestamp}"
            );
        }
    }
}
