//! Slack: `X-Slack-Signature: v0=<hex>` over `"v0:{X-Slack-Request-Timestamp}:{body}"`, HMAC-SHA256.

use std::time::Duration;

use super::{
    any_secret_signs, check_timestamp, decode_hex, hmac_digest, malformed, mismatch, replay_digest,
    required_header, Algorithm, Provider, SignatureError, SignedRequest,
};
use crate::secret::Secrets;

const SIGNATURE: &str = "X-Slack-Signature";
const TIMESTAMP: &str = "X-Slack-Request-Timestamp";

#[derive(Debug)]
pub struct Slack {
    pub secrets: Secrets,
    pub tolerance: Duration,
}

impl Provider for Slack {
    fn name(&self) -> &'static str {
        "slack"
    }

    fn verify(&self, request: &SignedRequest<'_>) -> Result<(), SignatureError> {
        let signature = required_header(request.headers, SIGNATURE)?;
        let timestamp = required_header(request.headers, TIMESTAMP)?;
        let expected = signature
            .strip_prefix("v0=")
            .and_then(|hex| decode_hex(hex, 32))
            .ok_or_else(|| malformed(SIGNATURE, "v0=<hex>"))?;
        if timestamp.parse::<i64>().is_err() {
            return Err(malformed(TIMESTAMP, "<unix time>"));
        }
        let signed = [b"v0:", timestamp.as_bytes(), b":", request.body];
        if !any_secret_signs(Algorithm::Sha256, &self.secrets, &signed, &expected) {
            return Err(mismatch(SIGNATURE));
        }
        check_timestamp(timestamp, TIMESTAMP, request.now, self.tolerance)
    }

    /// Slack sends no delivery id: every request is known by what it signed.
    fn replay_key(&self, request: &SignedRequest<'_>) -> Option<String> {
        let timestamp = required_header(request.headers, TIMESTAMP).ok()?;
        Some(replay_digest(&[
            b"v0:",
            timestamp.as_bytes(),
            b":",
            request.body,
        ]))
    }

    fn sign(&self, body: &[u8], _id: &str, timestamp: i64) -> Vec<(String, String)> {
        let Some(secret) = self.secrets.iter().next() else {
            return Vec::new();
        };
        let timestamp = timestamp.to_string();
        let digest = hmac_digest(
            Algorithm::Sha256,
            secret.expose(),
            &[b"v0:", timestamp.as_bytes(), b":", body],
        );
        vec![
            (TIMESTAMP.to_string(), timestamp),
            (SIGNATURE.to_string(), format!("v0={}", hex::encode(digest))),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::test_support::{check_at, secrets};

    // Slack's published example: https://api.slack.com/authentication/verifying-requests-from-slack
    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SIGNATURE_V0: &str =
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
    const NOW: i64 = 1_531_420_618;

    #[test]
    fn the_replay_key_names_what_was_signed_not_how_the_header_spells_it() {
        let provider = Slack {
            secrets: secrets(&[SECRET]),
            tolerance: Duration::from_secs(300),
        };
        let key = |signature: &str, timestamp: &str, body: &str| {
            let headers = crate::request::Headers::new([
                (SIGNATURE.to_string(), signature.to_string()),
                (TIMESTAMP.to_string(), timestamp.to_string()),
            ]);
            let request = SignedRequest {
                headers: &headers,
                query: &[],
                body: body.as_bytes(),
                now: NOW,
            };
            provider.replay_key(&request).expect("a key")
        };
        let original = key(SIGNATURE_V0, "1531420618", BODY);
        let shouted = format!("v0={}", SIGNATURE_V0[3..].to_uppercase());
        let cases = [
            (key(&shouted, "1531420618", BODY), true),
            (key(SIGNATURE_V0, "1531420619", BODY), false),
            (key(SIGNATURE_V0, "1531420618", "token=other"), false),
        ];
        for (index, (other, same)) in cases.into_iter().enumerate() {
            assert_eq!(other == original, same, "case {index}");
        }
        assert!(original.starts_with("signed:") && !original.contains(BODY));
    }

    #[test]
    fn verifies_slacks_published_example_and_refuses_bad_ones() {
        let provider = Slack {
            secrets: secrets(&[SECRET]),
            tolerance: Duration::from_secs(300),
        };
        assert_eq!(provider.sign(BODY.as_bytes(), "", NOW)[1].1, SIGNATURE_V0);
        let cases: &[(&[(&str, &str)], i64, &str)] = &[
            (
                &[(SIGNATURE, SIGNATURE_V0), (TIMESTAMP, "1531420618")],
                NOW,
                "ok",
            ),
            (
                &[(SIGNATURE, SIGNATURE_V0), (TIMESTAMP, "1531420618")],
                NOW + 301,
                "timestamp_out_of_tolerance",
            ),
            (
                &[(SIGNATURE, SIGNATURE_V0), (TIMESTAMP, "1531420619")],
                NOW,
                "signature_invalid",
            ),
            (
                &[(SIGNATURE, &SIGNATURE_V0[3..]), (TIMESTAMP, "1531420618")],
                NOW,
                "signature_invalid",
            ),
            (
                &[(SIGNATURE, "v0=abc"), (TIMESTAMP, "1531420618")],
                NOW,
                "signature_invalid",
            ),
            (
                &[(SIGNATURE, SIGNATURE_V0), (TIMESTAMP, "soon")],
                NOW,
                "signature_invalid",
            ),
            (&[(SIGNATURE, SIGNATURE_V0)], NOW, "signature_missing"),
            (&[(TIMESTAMP, "1531420618")], NOW, "signature_missing"),
        ];
        for (headers, now, expected) in cases {
            assert_eq!(
                check_at(&provider, headers, BODY, *now),
                *expected,
                "{headers:?}"
            );
        }
    }
}
