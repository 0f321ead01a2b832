//! An HMAC of the raw body in one header: the user's `hmac` scheme, and the base of the providers
//! that sign the same way (Gitea, Bitbucket, Shopify) with their own header, encoding and prefix.

use super::{
    any_secret_signs, decode_base64, decode_hex, hmac_digest, malformed, mismatch, Algorithm,
    Provider, SignatureError, SignedRequest,
};
use crate::request::IdSource;
use crate::secret::Secrets;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Hex,
    Base64,
}

#[derive(Debug)]
pub struct HmacScheme {
    pub name: &'static str,
    /// The headers that may carry the signature; the first one present is checked.
    pub headers: Vec<String>,
    pub algorithm: Algorithm,
    pub encoding: Encoding,
    pub prefix: String,
    pub secrets: Secrets,
    pub event_sources: &'static [IdSource],
    pub delivery_sources: &'static [IdSource],
}

impl HmacScheme {
    /// The user-configured `hmac` scheme.
    pub fn custom(
        header: String,
        algorithm: Algorithm,
        encoding: Encoding,
        prefix: String,
        secrets: Secrets,
    ) -> HmacScheme {
        HmacScheme {
            name: "hmac",
            headers: vec![header],
            algorithm,
            encoding,
            prefix,
            secrets,
            event_sources: &[],
            delivery_sources: &[],
        }
    }

    fn encode(&self, digest: &[u8]) -> String {
        let encoded = match self.encoding {
            Encoding::Hex => hex::encode(digest),
            Encoding::Base64 => {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.encode(digest)
            }
        };
        format!("{}{encoded}", self.prefix)
    }
}

impl Provider for HmacScheme {
    fn name(&self) -> &'static str {
        self.name
    }

    fn verify(&self, request: &SignedRequest<'_>) -> Result<(), SignatureError> {
        let found = self.headers.iter().find_map(|header| {
            let value = request.headers.get(header).map(str::trim);
            value
                .filter(|value| !value.is_empty())
                .map(|value| (header, value))
        });
        let Some((header, value)) = found else {
            return Err(SignatureError::Missing(format!(
                "the request has no `{}` header; configure the webhook's secret at the sender",
                self.headers.join("` or `")
            )));
        };
        let form = match self.encoding {
            Encoding::Hex => format!("{}<hex>", self.prefix),
            Encoding::Base64 => format!("{}<base64>", self.prefix),
        };
        let encoded = value
            .strip_prefix(self.prefix.as_str())
            .ok_or_else(|| malformed(header, &form))?;
        let length = self.algorithm.output_len();
        let expected = match self.encoding {
            Encoding::Hex => decode_hex(encoded, length),
            Encoding::Base64 => decode_base64(encoded, length),
        }
        .ok_or_else(|| malformed(header, &form))?;
        if any_secret_signs(self.algorithm, &self.secrets, &[request.body], &expected) {
            Ok(())
        } else {
            Err(mismatch(header))
        }
    }

    fn sign(&self, body: &[u8], _id: &str, _timestamp: i64) -> Vec<(String, String)> {
        let Some(secret) = self.secrets.iter().next() else {
            return Vec::new();
        };
        let digest = hmac_digest(self.algorithm, secret.expose(), &[body]);
        vec![(self.headers[0].clone(), self.encode(&digest))]
    }

    fn event_sources(&self) -> &'static [IdSource] {
        self.event_sources
    }

    fn delivery_sources(&self) -> &'static [IdSource] {
        self.delivery_sources
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::test_support::{check, secrets};

    fn scheme(algorithm: Algorithm, encoding: Encoding, prefix: &str) -> HmacScheme {
        HmacScheme::custom(
            "X-Signature".into(),
            algorithm,
            encoding,
            prefix.into(),
            secrets(&["key"]),
        )
    }

    #[test]
    fn verifies_generic_hmacs() {
        // Vectors computed with: printf 'The quick brown fox jumps over the lazy dog' | openssl dgst -<alg> -hmac key [-binary | base64]
        let body = "The quick brown fox jumps over the lazy dog";
        let sha256_hex = "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8";
        let sha1_hex = "de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d9";
        let sha512_b64 = "tCrwkFe6weLUFwjkipAuCbX/fxKrQopP6GZTxz3SSPuC+UilSfe3kaW0GRXuTR7Dk1NX5OIxclDQNyr6Lr7rOg==";
        let sha256_b64 = "97yD9DBThCSxMpjmqm+xQ+9NWaFJRhdZl0edvC0aPNg=";
        let cases: &[(HmacScheme, &str, &str, &str)] = &[
            (
                scheme(Algorithm::Sha256, Encoding::Hex, "sha256="),
                &format!("sha256={sha256_hex}"),
                body,
                "ok",
            ),
            (
                scheme(Algorithm::Sha256, Encoding::Hex, ""),
                sha256_hex,
                body,
                "ok",
            ),
            (
                scheme(Algorithm::Sha256, Encoding::Hex, ""),
                sha256_hex,
                "the quick",
                "signature_invalid",
            ),
            (
                scheme(Algorithm::Sha256, Encoding::Hex, "sha256="),
                sha256_hex,
                body,
                "signature_invalid",
            ),
            (
                scheme(Algorithm::Sha1, Encoding::Hex, ""),
                sha1_hex,
                body,
                "ok",
            ),
            (
                scheme(Algorithm::Sha1, Encoding::Hex, ""),
                sha256_hex,
                body,
                "signature_invalid",
            ),
            (
                scheme(Algorithm::Sha512, Encoding::Base64, ""),
                sha512_b64,
                body,
                "ok",
            ),
            (
                scheme(Algorithm::Sha256, Encoding::Base64, ""),
                sha256_b64,
                body,
                "ok",
            ),
            (
                scheme(Algorithm::Sha256, Encoding::Base64, ""),
                "not base64!!",
                body,
                "signature_invalid",
            ),
            (
                scheme(Algorithm::Sha256, Encoding::Base64, ""),
                "",
                body,
                "signature_missing",
            ),
        ];
        for (provider, header, body, expected) in cases {
            let got = check(provider, &[("X-Signature", header)], &[], body);
            assert_eq!(got, *expected, "{provider:?} {header}");
        }
        let sign = scheme(Algorithm::Sha512, Encoding::Base64, "").sign(body.as_bytes(), "", 0);
        assert_eq!(sign, [("X-Signature".to_string(), sha512_b64.to_string())]);
    }
}
