//! Gitea, Forgejo and Gogs: HMAC-SHA256 of the body, hex without a prefix, in their own header
//! (also taken with `sha256=` and as a comma-separated list, as adnanh/webhook takes it).

use super::hmac::{Encoding, HmacScheme};
use super::Algorithm;
use crate::request::IdSource;
use crate::secret::Secrets;

pub fn gitea(secrets: Secrets) -> HmacScheme {
    HmacScheme {
        name: "gitea",
        headers: vec![
            "X-Gitea-Signature".into(),
            "X-Forgejo-Signature".into(),
            "X-Gogs-Signature".into(),
        ],
        algorithm: Algorithm::Sha256,
        encoding: Encoding::Hex,
        prefix: String::new(),
        lenient: true,
        secrets,
        event_sources: &[
            IdSource::Header("X-Gitea-Event"),
            IdSource::Header("X-Forgejo-Event"),
            IdSource::Header("X-Gogs-Event"),
        ],
        delivery_sources: &[
            IdSource::Header("X-Gitea-Delivery"),
            IdSource::Header("X-Forgejo-Delivery"),
            IdSource::Header("X-Gogs-Delivery"),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::test_support::{check, secrets};

    #[test]
    fn verifies_gitea_forgejo_and_gogs_headers() {
        // printf '{"ref":"refs/heads/main"}' | openssl dgst -sha256 -hmac gitea-secret
        let body = r#"{"ref":"refs/heads/main"}"#;
        let actual = "6aab54046b413afedbc6d4ff0d3b4fd694c1af82c19c0be7ee9b80438b90223d";
        let provider = gitea(secrets(&["gitea-secret"]));
        let signed = crate::signature::Provider::sign(&provider, body.as_bytes(), "", 0);
        assert_eq!(
            signed,
            [("X-Gitea-Signature".to_string(), actual.to_string())]
        );
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("X-Gitea-Signature", actual)], "ok"),
            (&[("X-Forgejo-Signature", actual)], "ok"),
            (&[("X-Gogs-Signature", actual)], "ok"),
            (&[("X-Gitea-Signature", &format!("sha256={actual}"))], "ok"),
            (&[("X-Gitea-Signature", &format!("00, {actual}"))], "ok"),
            (&[("X-Gitea-Signature", "00, 11")], "signature_invalid"),
            (&[("X-Gitea-Signature", &actual[1..])], "signature_invalid"),
            (&[("X-Hub-Signature-256", actual)], "signature_missing"),
        ];
        for (headers, expected) in cases {
            assert_eq!(
                check(&provider, headers, &[], body),
                *expected,
                "{headers:?}"
            );
        }
    }
}
