//! Standard Webhooks (standardwebhooks.com, also Svix): `webhook-signature: v1,<base64> ...` over
//! `"{webhook-id}.{webhook-timestamp}.{body}"`, HMAC-SHA256 keyed with the base64 secret after `whsec_`.

use std::time::Duration;

use base64::Engine as _;

use super::{
    any_secret_signs_one_of, check_timestamp, decode_base64, hmac_digest, malformed, mismatch,
    required_header, Algorithm, Provider, SignatureError, SignedRequest,
};
use crate::request::IdSource;
use crate::secret::{Secret, Secrets};

const ID: &str = "webhook-id";
const TIMESTAMP: &str = "webhook-timestamp";
const SIGNATURE: &str = "webhook-signature";

#[derive(Debug)]
pub struct Standard {
    /// The decoded key bytes, not the `whsec_` text.
    pub keys: Secrets,
    pub tolerance: Duration,
}

/// Decodes a `whsec_<base64>` secret (the prefix is optional) into its key bytes.
pub fn decode_secret(secret: &Secret) -> Result<Secret, String> {
    let text =
        std::str::from_utf8(secret.expose()).map_err(|_| "the secret is not text".to_string())?;
    let encoded = text.strip_prefix("whsec_").unwrap_or(text);
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()
        .filter(|key| !key.is_empty())
        .map(Secret::new)
        .ok_or_else(|| {
            "a Standard Webhooks secret is `whsec_` followed by base64, as the sender shows it"
                .to_string()
        })
}

impl Provider for Standard {
    fn name(&self) -> &'static str {
        "standard"
    }

    fn verify(&self, request: &SignedRequest<'_>) -> Result<(), SignatureError> {
        let id = required_header(request.headers, ID)?;
        let timestamp = required_header(request.headers, TIMESTAMP)?;
        let signatures = required_header(request.headers, SIGNATURE)?;
        if timestamp.parse::<i64>().is_err() {
            return Err(malformed(TIMESTAMP, "<unix time>"));
        }
        let given: Vec<Vec<u8>> = signatures
            .split(' ')
            .filter_map(|entry| entry.strip_prefix("v1,"))
            .filter_map(|encoded| decode_base64(encoded, 32))
            .collect();
        if given.is_empty() {
            return Err(malformed(SIGNATURE, "v1,<base64> [v1,<base64> ...]"));
        }
        let signed = [
            id.as_bytes(),
            b".",
            timestamp.as_bytes(),
            b".",
            request.body,
        ];
        let matched = any_secret_signs_one_of(Algorithm::Sha256, &self.keys, &signed, &given);
        if !matched {
            return Err(mismatch(SIGNATURE));
        }
        check_timestamp(timestamp, TIMESTAMP, request.now, self.tolerance)
    }

    fn sign(&self, body: &[u8], id: &str, timestamp: i64) -> Vec<(String, String)> {
        let Some(key) = self.keys.iter().next() else {
            return Vec::new();
        };
        let timestamp = timestamp.to_string();
        let digest = hmac_digest(
            Algorithm::Sha256,
            key.expose(),
            &[id.as_bytes(), b".", timestamp.as_bytes(), b".", body],
        );
        let encoded = base64::engine::general_purpose::STANDARD.encode(digest);
        vec![
            (ID.to_string(), id.to_string()),
            (TIMESTAMP.to_string(), timestamp),
            (SIGNATURE.to_string(), format!("v1,{encoded}")),
        ]
    }

    fn event_sources(&self) -> &'static [IdSource] {
        &[IdSource::Payload("type")]
    }

    fn delivery_sources(&self) -> &'static [IdSource] {
        &[IdSource::Header(ID)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::test_support::{check_at, secrets};

    // The published test vector of the Standard Webhooks specification.
    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const MSG_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const BODY: &str = r#"{"email":"test@example.com","username":"test_user"}"#;
    const SIGNED: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";
    const NOW: i64 = 1_649_367_553;

    fn provider() -> Standard {
        let keys = secrets(&["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", SECRET]);
        let keys = Secrets(keys.iter().map(|s| decode_secret(s).unwrap()).collect());
        Standard {
            keys,
            tolerance: Duration::from_secs(300),
        }
    }

    #[test]
    fn verifies_the_published_vector_and_refuses_bad_ones() {
        let only_published = Standard {
            keys: Secrets(vec![decode_secret(&Secret::new(SECRET)).unwrap()]),
            tolerance: Duration::from_secs(300),
        };
        assert_eq!(
            only_published.sign(BODY.as_bytes(), MSG_ID, NOW)[2].1,
            SIGNED
        );
        let with = |signature: &str, timestamp: &str| {
            vec![
                (ID, MSG_ID.to_string()),
                (TIMESTAMP, timestamp.to_string()),
                (SIGNATURE, signature.to_string()),
            ]
        };
        let cases: Vec<(Vec<(&str, String)>, i64, &str)> = vec![
            (with(SIGNED, "1649367553"), NOW, "ok"),
            (
                with(&format!("v1,Zm9v{} {SIGNED}", "A".repeat(40)), "1649367553"),
                NOW,
                "ok",
            ),
            (with(&format!("v2,abc {SIGNED}"), "1649367553"), NOW, "ok"),
            (
                with(SIGNED, "1649367553"),
                NOW + 301,
                "timestamp_out_of_tolerance",
            ),
            (
                with(SIGNED, "1649367553"),
                NOW - 301,
                "timestamp_out_of_tolerance",
            ),
            (with(SIGNED, "1649367554"), NOW, "signature_invalid"),
            (with(&SIGNED[3..], "1649367553"), NOW, "signature_invalid"),
            (with("v1,!!!", "1649367553"), NOW, "signature_invalid"),
            (with("v1,", "1649367553"), NOW, "signature_invalid"),
            (with(SIGNED, "yesterday"), NOW, "signature_invalid"),
            (with("", "1649367553"), NOW, "signature_missing"),
            (
                vec![(TIMESTAMP, "1649367553".into()), (SIGNATURE, SIGNED.into())],
                NOW,
                "signature_missing",
            ),
        ];
        for (headers, now, expected) in cases {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            assert_eq!(
                check_at(&provider(), &headers, BODY, now),
                expected,
                "{headers:?}"
            );
        }
    }

    #[test]
    fn secrets_must_be_base64() {
        assert!(decode_secret(&Secret::new("whsec_not base64!")).is_err());
        assert!(decode_secret(&Secret::new("whsec_")).is_err());
        assert!(decode_secret(&Secret::new("C2FVsBQIhrscChlQIMV+b5sSYspob7oD")).is_ok());
    }
}
