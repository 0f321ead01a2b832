//! GitHub: `X-Hub-Signature-256: sha256=<hex>` over the raw body; SHA-1 only when allowed. As
//! adnanh/webhook does, the signature is also taken without its prefix, and as a comma-separated
//! list of which any one may match: neither lets a wrong signature through.

use super::{
    any_secret_signs_one_of, hmac_digest, listed_hex, malformed, mismatch, Algorithm, Provider,
    SignatureError, SignedRequest,
};
use crate::request::IdSource;
use crate::secret::Secrets;

const SHA256_HEADER: &str = "X-Hub-Signature-256";
const SHA1_HEADER: &str = "X-Hub-Signature";

#[derive(Debug)]
pub struct Github {
    pub secrets: Secrets,
    /// Accept the legacy `X-Hub-Signature: sha1=...` when no SHA-256 signature is sent.
    pub allow_sha1: bool,
}

impl Provider for Github {
    fn name(&self) -> &'static str {
        "github"
    }

    fn verify(&self, request: &SignedRequest<'_>) -> Result<(), SignatureError> {
        let present = |name| {
            let value = request.headers.get(name).map(str::trim);
            value.filter(|value| !value.is_empty())
        };
        let (sha256, sha1) = (present(SHA256_HEADER), present(SHA1_HEADER));
        let (header, value, algorithm, prefix) = match (sha256, sha1) {
            (Some(value), _) => (SHA256_HEADER, value, Algorithm::Sha256, "sha256="),
            (None, Some(value)) if self.allow_sha1 => (SHA1_HEADER, value, Algorithm::Sha1, "sha1="),
            (None, Some(_)) => {
                return Err(SignatureError::Missing(format!(
                    "the request has only a SHA-1 `{SHA1_HEADER}`; send `{SHA256_HEADER}` or set `allow_sha1: true`"
                )))
            }
            (None, None) => {
                return Err(SignatureError::Missing(format!(
                    "the request has no `{SHA256_HEADER}` header; set the webhook's secret in GitHub"
                )))
            }
        };
        let candidates = listed_hex(value, prefix, algorithm.output_len());
        if candidates.is_empty() {
            return Err(malformed(header, &format!("{prefix}<hex>")));
        }
        if any_secret_signs_one_of(algorithm, &self.secrets, &[request.body], &candidates) {
            Ok(())
        } else {
            Err(mismatch(header))
        }
    }

    fn sign(&self, body: &[u8], _id: &str, _timestamp: i64) -> Vec<(String, String)> {
        let Some(secret) = self.secrets.iter().next() else {
            return Vec::new();
        };
        let sha256 = hmac_digest(Algorithm::Sha256, secret.expose(), &[body]);
        let sha1 = hmac_digest(Algorithm::Sha1, secret.expose(), &[body]);
        vec![
            (
                SHA256_HEADER.to_string(),
                format!("sha256={}", hex::encode(sha256)),
            ),
            (
                SHA1_HEADER.to_string(),
                format!("sha1={}", hex::encode(sha1)),
            ),
        ]
    }

    fn event_sources(&self) -> &'static [IdSource] {
        &[IdSource::Header("X-GitHub-Event")]
    }

    fn delivery_sources(&self) -> &'static [IdSource] {
        &[IdSource::Header("X-GitHub-Delivery")]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::test_support::{check, secrets};

    // GitHub's published example: https://docs.github.com/webhooks/using-webhooks/validating-webhook-deliveries
    const SECRET: &str = "It's a Secret to Everybody";
    const BODY: &str = "Hello, World!";
    const SIGNATURE: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    // Computed with: printf 'Hello, World!' | openssl dgst -sha1 -hmac "It's a Secret to Everybody"
    const SHA1_SIGNATURE: &str = "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59";

    #[test]
    fn verifies_github_signatures() {
        let strict = Github {
            secrets: secrets(&[SECRET]),
            allow_sha1: false,
        };
        let lenient = Github {
            secrets: secrets(&["old secret", SECRET]),
            allow_sha1: true,
        };
        let cases: &[(&Github, &[(&str, &str)], &str, &str)] = &[
            (&strict, &[("X-Hub-Signature-256", SIGNATURE)], BODY, "ok"),
            (&strict, &[("x-hub-signature-256", SIGNATURE)], BODY, "ok"),
            (&lenient, &[("X-Hub-Signature-256", SIGNATURE)], BODY, "ok"),
            (
                &strict,
                &[("X-Hub-Signature-256", SIGNATURE)],
                "Hello, World?",
                "signature_invalid",
            ),
            (&strict, &[], BODY, "signature_missing"),
            (
                &strict,
                &[("X-Hub-Signature-256", "")],
                BODY,
                "signature_missing",
            ),
            (
                &strict,
                &[("X-Hub-Signature-256", "sha256=")],
                BODY,
                "signature_invalid",
            ),
            (
                &strict,
                &[("X-Hub-Signature-256", &SIGNATURE[..40])],
                BODY,
                "signature_invalid",
            ),
            // As adnanh/webhook takes it: without the prefix, and in a list.
            (
                &strict,
                &[("X-Hub-Signature-256", &SIGNATURE[7..])],
                BODY,
                "ok",
            ),
            (
                &strict,
                &[("X-Hub-Signature-256", &format!("sha256=00, {SIGNATURE}"))],
                BODY,
                "ok",
            ),
            (
                &strict,
                &[(
                    "X-Hub-Signature-256",
                    &format!("{}, sha256=00", &SIGNATURE[7..]),
                )],
                "Hello, World?",
                "signature_invalid",
            ),
            (
                &strict,
                &[("X-Hub-Signature-256", "sha256=00, sha256=11")],
                BODY,
                "signature_invalid",
            ),
            (
                &strict,
                &[(
                    "X-Hub-Signature-256",
                    &format!("{},{SIGNATURE}", vec!["sha256=00"; 16].join(",")),
                )],
                BODY,
                "signature_invalid",
            ),
            (
                &strict,
                &[(
                    "X-Hub-Signature-256",
                    "sha256=zz7107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
                )],
                BODY,
                "signature_invalid",
            ),
            (
                &strict,
                &[(
                    "X-Hub-Signature-256",
                    "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e1",
                )],
                BODY,
                "signature_invalid",
            ),
            (
                &strict,
                &[("X-Hub-Signature", SHA1_SIGNATURE)],
                BODY,
                "signature_missing",
            ),
            (&lenient, &[("X-Hub-Signature", SHA1_SIGNATURE)], BODY, "ok"),
            (
                &lenient,
                &[("X-Hub-Signature", SHA1_SIGNATURE)],
                "other",
                "signature_invalid",
            ),
        ];
        for (provider, headers, body, expected) in cases {
            assert_eq!(
                check(*provider, headers, &[], body),
                *expected,
                "{headers:?} {body}"
            );
        }
    }
}
