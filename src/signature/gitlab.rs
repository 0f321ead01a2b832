//! GitLab: the secret token sent as-is in `X-Gitlab-Token`, compared in constant time.

use super::{required_header, tokens_equal, Provider, SignatureError, SignedRequest};
use crate::request::IdSource;
use crate::secret::Secrets;

const HEADER: &str = "X-Gitlab-Token";

#[derive(Debug)]
pub struct Gitlab {
    pub secrets: Secrets,
}

impl Provider for Gitlab {
    fn name(&self) -> &'static str {
        "gitlab"
    }

    fn verify(&self, request: &SignedRequest<'_>) -> Result<(), SignatureError> {
        let token = required_header(request.headers, HEADER)?;
        if self
            .secrets
            .iter()
            .any(|secret| tokens_equal(token.as_bytes(), secret.expose()))
        {
            Ok(())
        } else {
            Err(SignatureError::Invalid(format!(
                "the `{HEADER}` token is wrong; set the webhook's secret token in GitLab to the configured secret"
            )))
        }
    }

    fn sign(&self, _body: &[u8], _id: &str, _timestamp: i64) -> Vec<(String, String)> {
        let token = self
            .secrets
            .iter()
            .next()
            .map(|secret| String::from_utf8_lossy(secret.expose()).into_owned());
        token
            .map(|token| (HEADER.to_string(), token))
            .into_iter()
            .collect()
    }

    fn event_sources(&self) -> &'static [IdSource] {
        &[IdSource::Header("X-Gitlab-Event")]
    }

    fn delivery_sources(&self) -> &'static [IdSource] {
        &[
            IdSource::Header("Idempotency-Key"),
            IdSource::Header("X-Gitlab-Event-UUID"),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::test_support::{check, secrets};

    #[test]
    fn verifies_gitlab_tokens() {
        let provider = Gitlab {
            secrets: secrets(&["new-token", "old-token"]),
        };
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("X-Gitlab-Token", "new-token")], "ok"),
            (&[("X-Gitlab-Token", "old-token")], "ok"),
            (&[("X-Gitlab-Token", "new-token ")], "ok"),
            (&[("X-Gitlab-Token", "new-toke")], "signature_invalid"),
            (&[("X-Gitlab-Token", "new-tokenn")], "signature_invalid"),
            (&[("X-Gitlab-Token", "")], "signature_missing"),
            (&[], "signature_missing"),
        ];
        for (headers, expected) in cases {
            assert_eq!(
                check(&provider, headers, &[], "{}"),
                *expected,
                "{headers:?}"
            );
        }
    }
}
