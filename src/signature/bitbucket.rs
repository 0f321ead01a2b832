//! Bitbucket Cloud and Data Center: `X-Hub-Signature: sha256=<hex>`, an HMAC-SHA256 of the body
//! (also taken without the prefix and as a comma-separated list, as adnanh/webhook takes it).

use super::hmac::{Encoding, HmacScheme};
use super::Algorithm;
use crate::request::IdSource;
use crate::secret::Secrets;

pub fn bitbucket(secrets: Secrets) -> HmacScheme {
    HmacScheme {
        name: "bitbucket",
        headers: vec!["X-Hub-Signature".into()],
        algorithm: Algorithm::Sha256,
        encoding: Encoding::Hex,
        prefix: "sha256=".into(),
        lenient: true,
        secrets,
        event_sources: &[IdSource::Header("X-Event-Key")],
        delivery_sources: &[IdSource::Header("X-Request-UUID")],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::test_support::{check, secrets};
    use crate::signature::Provider;

    #[test]
    fn verifies_bitbucket_signatures() {
        // printf '{"push":{}}' | openssl dgst -sha256 -hmac bb-secret
        let body = r#"{"push":{}}"#;
        let good = "sha256=47f645e230992db16f3826c6c4fbf91d3fc9b2a87dd876f43be3b588dea4ee4e";
        let provider = bitbucket(secrets(&["bb-secret"]));
        assert_eq!(
            provider.sign(body.as_bytes(), "", 0),
            [("X-Hub-Signature".to_string(), good.to_string())]
        );
        let cases: &[(&[(&str, &str)], &str, &str)] = &[
            (&[("X-Hub-Signature", good)], body, "ok"),
            (&[("X-Hub-Signature", good)], "{}", "signature_invalid"),
            (&[("X-Hub-Signature", &good[7..])], body, "ok"),
            (
                &[("X-Hub-Signature", &format!("sha256=00,{good}"))],
                body,
                "ok",
            ),
            (
                &[("X-Hub-Signature", &good[7..])],
                "{}",
                "signature_invalid",
            ),
            (
                &[(
                    "X-Hub-Signature",
                    "sha1=47f645e230992db16f3826c6c4fbf91d3fc9b2a8",
                )],
                body,
                "signature_invalid",
            ),
            (&[], body, "signature_missing"),
        ];
        for (headers, body, expected) in cases {
            assert_eq!(
                check(&provider, headers, &[], body),
                *expected,
                "{headers:?}"
            );
        }
    }
}
