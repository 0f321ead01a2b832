//! A plain shared token in a header or a query parameter, compared in constant time.

use super::{tokens_equal, Provider, SignatureError, SignedRequest};
use crate::secret::Secrets;

#[derive(Debug)]
pub enum TokenLocation {
    Header(String),
    Query(String),
}

#[derive(Debug)]
pub struct Token {
    pub location: TokenLocation,
    pub secrets: Secrets,
}

impl Provider for Token {
    fn name(&self) -> &'static str {
        "token"
    }

    fn verify(&self, request: &SignedRequest<'_>) -> Result<(), SignatureError> {
        let (given, place) = match &self.location {
            TokenLocation::Header(name) => (
                request.headers.get(name).map(str::trim).map(str::to_string),
                format!("`{name}` header"),
            ),
            TokenLocation::Query(name) => (
                request
                    .query
                    .iter()
                    .find(|(key, _)| key == name)
                    .map(|(_, value)| value.clone()),
                format!("`{name}` query parameter"),
            ),
        };
        let given = match given {
            Some(given) if !given.is_empty() => given,
            _ => {
                return Err(SignatureError::Missing(format!(
                    "the request has no {place} carrying the token"
                )))
            }
        };
        if self
            .secrets
            .iter()
            .any(|secret| tokens_equal(given.as_bytes(), secret.expose()))
        {
            Ok(())
        } else {
            Err(SignatureError::Invalid(format!(
                "the token in the {place} is wrong"
            )))
        }
    }

    /// A header token is sent as it is; a query token goes in the URL, so no header is printed.
    fn sign(&self, _body: &[u8], _id: &str, _timestamp: i64) -> Vec<(String, String)> {
        match (&self.location, self.secrets.iter().next()) {
            (TokenLocation::Header(name), Some(secret)) => {
                vec![(
                    name.clone(),
                    String::from_utf8_lossy(secret.expose()).into_owned(),
                )]
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::test_support::{check, secrets};

    #[test]
    fn verifies_tokens_in_headers_and_queries() {
        let header = Token {
            location: TokenLocation::Header("X-Token".into()),
            secrets: secrets(&["s3cret"]),
        };
        let query = Token {
            location: TokenLocation::Query("token".into()),
            secrets: secrets(&["s3cret"]),
        };
        let cases: &[(&Token, &[(&str, &str)], &[(&str, &str)], &str)] = &[
            (&header, &[("x-token", "s3cret")], &[], "ok"),
            (&header, &[("x-token", "S3cret")], &[], "signature_invalid"),
            (&header, &[], &[("token", "s3cret")], "signature_missing"),
            (&query, &[], &[("token", "s3cret")], "ok"),
            (&query, &[], &[("token", "")], "signature_missing"),
            (&query, &[("x-token", "s3cret")], &[], "signature_missing"),
            (&query, &[], &[("token", "nope")], "signature_invalid"),
        ];
        for (provider, headers, query_pairs, expected) in cases {
            assert_eq!(
                check(*provider, headers, query_pairs, ""),
                *expected,
                "{headers:?} {query_pairs:?}"
            );
        }
    }
}
