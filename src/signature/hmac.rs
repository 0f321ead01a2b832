//! A generic HMAC of the body in a header of the user's choosing: algorithm, encoding and prefix.

use super::{
    any_secret_signs, decode_base64, decode_hex, malformed, mismatch, required_header, Algorithm,
    Provider, SignatureError, SignedRequest,
};
use crate::config::secret::Secrets;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Hex,
    Base64,
}

#[derive(Debug)]
pub struct HmacScheme {
    pub header: String,
    pub algorithm: Algorithm,
    pub encoding: Encoding,
    pub prefix: String,
    pub secrets: Secrets,
}

impl Provider for HmacScheme {
    fn name(&self) -> &'static str {
        "hmac"
    }

    fn verify(&self, request: &SignedRequest<'_>) -> Result<(), SignatureError> {
        let value = required_header(request.headers, &self.header)?;
        let form = match self.encoding {
            Encoding::Hex => format!("{}<hex>", self.prefix),
            Encoding::Base64 => format!("{}<base64>", self.prefix),
        };
        let encoded = value
            .strip_prefix(self.prefix.as_str())
            .ok_or_else(|| malformed(&self.header, &form))?;
        let length = self.algorithm.output_len();
        let expected = match self.encoding {
            Encoding::Hex => decode_hex(encoded, length),
            Encoding::Base64 => decode_base64(encoded, length),
        }
        .ok_or_else(|| malformed(&self.header, &form))?;
        if any_secret_signs(self.algorithm, &self.secrets, &[request.body], &expected) {
            Ok(())
        } else {
            Err(mismatch(&self.header))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::test_support::{check, secrets};

    fn scheme(algorithm: Algorithm, encoding: Encoding, prefix: &str) -> HmacScheme {
        HmacScheme {
            header: "X-Signature".into(),
            algorithm,
            encoding,
            prefix: prefix.into(),
            secrets: secrets(&["key"]),
        }
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
    }
}
