//! Shopify: `X-Shopify-Hmac-Sha256`, an HMAC-SHA256 of the body in base64.

use super::hmac::{Encoding, HmacScheme};
use super::Algorithm;
use crate::request::IdSource;
use crate::secret::Secrets;

pub fn shopify(secrets: Secrets) -> HmacScheme {
    HmacScheme {
        name: "shopify",
        headers: vec!["X-Shopify-Hmac-Sha256".into()],
        algorithm: Algorithm::Sha256,
        encoding: Encoding::Base64,
        prefix: String::new(),
        lenient: false,
        secrets,
        event_sources: &[IdSource::Header("X-Shopify-Topic")],
        delivery_sources: &[IdSource::Header("X-Shopify-Webhook-Id")],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::test_support::{check, secrets};
    use crate::signature::Provider;

    #[test]
    fn verifies_shopify_signatures() {
        // printf '{"id":820982911946154500}' | openssl dgst -sha256 -hmac shpss_secret -binary | base64
        let body = r#"{"id":820982911946154500}"#;
        let good = "2/nwdMKrCfMJt6FFPLqqjMOnFaC9UHjJ/AWyUAEJ2Io=";
        let provider = shopify(secrets(&["shpss_secret"]));
        assert_eq!(
            provider.sign(body.as_bytes(), "", 0),
            [("X-Shopify-Hmac-Sha256".to_string(), good.to_string())]
        );
        let cases: &[(&[(&str, &str)], &str, &str)] = &[
            (&[("X-Shopify-Hmac-Sha256", good)], body, "ok"),
            (
                &[("X-Shopify-Hmac-Sha256", good)],
                r#"{"id":820982911946154501}"#,
                "signature_invalid",
            ),
            (
                &[("X-Shopify-Hmac-Sha256", &good[..good.len() - 1])],
                body,
                "signature_invalid",
            ),
            (
                &[(
                    "X-Shopify-Hmac-Sha256",
                    "2/nwdMKrCfMJt6FFPLqqjMOnFaC9UHjJ/AWyUAEJ2Io",
                )],
                body,
                "signature_invalid",
            ),
            (
                &[("X-Shopify-Hmac-Sha256", "%%%")],
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
