//! An HMAC of the raw body in one header: the user's `hmac` scheme, and the base of the providers
//! that sign the same way (Gitea, Bitbucket, Shopify) with their own header, encoding and prefix.

use super::{
    any_secret_signs_one_of, decode_base64, decode_hex, hmac_digest, malformed, mismatch,
    Algorithm, Provider, SignatureError, SignedRequest, MAX_LISTED,
};
use crate::request::IdSource;
use crate::secret::Secrets;

/// How many comma-separated signatures a lenient header may list; the rest are not looked at, so
/// a long header costs no more than this many HMAC comparisons.
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
    /// adnanh/webhook's leniency, for the user's `hmac` scheme only (providers keep their exact
    /// format): the prefix (or the algorithm's own, `sha256=`) may be left out, and the header may
    /// carry a comma-separated list of signatures, any one of which may match.
    pub lenient: bool,
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
            lenient: true,
            secrets,
            event_sources: &[],
            delivery_sources: &[],
        }
    }

    /// A lenient signature without the configured prefix or the algorithm's own (`sha256=`),
    /// whichever it starts with.
    fn without_prefix<'v>(&self, value: &'v str) -> &'v str {
        let own = match self.algorithm {
            Algorithm::Sha1 => "sha1=",
            Algorithm::Sha256 => "sha256=",
            Algorithm::Sha512 => "sha512=",
        };
        [self.prefix.as_str(), own]
            .into_iter()
            .filter(|prefix| !prefix.is_empty())
            .find_map(|prefix| value.strip_prefix(prefix))
            .unwrap_or(value)
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
        let length = self.algorithm.output_len();
        let decode = |encoded: &str| match self.encoding {
            Encoding::Hex => decode_hex(encoded, length),
            Encoding::Base64 => decode_base64(encoded, length),
        };
        let candidates: Vec<Vec<u8>> = if self.lenient {
            value
                .split(',')
                .take(MAX_LISTED)
                .filter_map(|listed| decode(self.without_prefix(listed.trim())))
                .collect()
        } else {
            value
                .strip_prefix(self.prefix.as_str())
                .and_then(decode)
                .into_iter()
                .collect()
        };
        if candidates.is_empty() {
            return Err(malformed(header, &form));
        }
        if any_secret_signs_one_of(self.algorithm, &self.secrets, &[request.body], &candidates) {
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
                "ok",
            ),
            (
                scheme(Algorithm::Sha256, Encoding::Hex, ""),
                &format!("sha256={sha256_hex}"),
                body,
                "ok",
            ),
            (
                scheme(Algorithm::Sha256, Encoding::Hex, ""),
                &format!("sha256=00, sha256={sha1_hex},{sha256_hex}"),
                body,
                "ok",
            ),
            (
                scheme(Algorithm::Sha1, Encoding::Hex, "sha1="),
                &format!("sha1={sha256_hex},sha1={sha1_hex}"),
                body,
                "ok",
            ),
            (
                scheme(Algorithm::Sha256, Encoding::Hex, "sha256="),
                &format!("sha1={sha256_hex}"),
                body,
                "signature_invalid",
            ),
            (
                scheme(Algorithm::Sha256, Encoding::Hex, "sha256="),
                &format!("{},{sha256_hex}", vec!["sha256=00"; 16].join(",")),
                body,
                "signature_invalid",
            ),
            (
                scheme(Algorithm::Sha256, Encoding::Hex, "sha256="),
                ",,,",
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
