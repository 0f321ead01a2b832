//! Scalr: `X-Signature: <hex>`, an HMAC-SHA1 of the body followed by the `Date` header's text,
//! with that `Date` (`Fri 08 Sep 2017 11:24:32 UTC`) close to the server's clock. adnanh/webhook's
//! `scalr-signature`.

use std::time::{Duration, UNIX_EPOCH};

use super::{
    any_secret_signs, check_skew, decode_hex, hmac_digest, malformed, mismatch, replay_digest,
    required_header, Algorithm, Provider, SignatureError, SignedRequest,
};
use crate::secret::Secrets;

const SIGNATURE: &str = "X-Signature";
const DATE: &str = "Date";
/// Go's layout for the `Date` Scalr signs, as adnanh/webhook parses it.
const DATE_FORM: &str = "Mon 02 Jan 2006 15:04:05 UTC";

#[derive(Debug)]
pub struct Scalr {
    pub secrets: Secrets,
    pub tolerance: Duration,
}

impl Provider for Scalr {
    fn name(&self) -> &'static str {
        "scalr"
    }

    fn verify(&self, request: &SignedRequest<'_>) -> Result<(), SignatureError> {
        let signature = required_header(request.headers, SIGNATURE)?;
        let date = required_header(request.headers, DATE)?;
        let expected = decode_hex(signature, 20).ok_or_else(|| malformed(SIGNATURE, "<hex>"))?;
        let signed = [request.body, date.as_bytes()];
        if !any_secret_signs(Algorithm::Sha1, &self.secrets, &signed, &expected) {
            return Err(mismatch(SIGNATURE));
        }
        // Read only once the signature holds, as the other timestamped schemes do; a date that
        // does not parse fails closed.
        let sent = parse_date(date).ok_or_else(|| malformed(DATE, DATE_FORM))?;
        check_skew(sent, DATE, request.now, self.tolerance)
    }

    /// Scalr sends no delivery id: every request is known by what it signed.
    fn replay_key(&self, request: &SignedRequest<'_>) -> Option<String> {
        let date = required_header(request.headers, DATE).ok()?;
        // A header cannot hold a newline, so the date and the body cannot run into each other.
        Some(replay_digest(&[date.as_bytes(), b"\n", request.body]))
    }

    fn sign(&self, body: &[u8], _id: &str, timestamp: i64) -> Vec<(String, String)> {
        let Some(secret) = self.secrets.iter().next() else {
            return Vec::new();
        };
        let date = format_date(timestamp);
        let digest = hmac_digest(Algorithm::Sha1, secret.expose(), &[body, date.as_bytes()]);
        vec![
            (DATE.to_string(), date),
            (SIGNATURE.to_string(), hex::encode(digest)),
        ]
    }
}

/// Seconds since the Unix epoch of a Scalr `Date` such as `Fri 08 Sep 2017 11:24:32 UTC`, or
/// `None` when it is not in that form. It is the HTTP date form without the comma, so `httpdate`
/// reads it once the comma is put back. The zone must be `UTC` (or `GMT`): Go reads any other
/// abbreviation it does not know as UTC, which could shift the time by hours, so it is refused.
/// A weekday that does not fit the date is refused too.
fn parse_date(text: &str) -> Option<i64> {
    let (weekday, rest) = text.split_once(' ')?;
    let rest = rest
        .strip_suffix(" UTC")
        .or_else(|| rest.strip_suffix(" GMT"))?;
    if weekday.len() != 3 || !weekday.bytes().all(|b| b.is_ascii_alphabetic()) {
        return None;
    }
    let sent = httpdate::parse_http_date(&format!("{weekday}, {rest} GMT")).ok()?;
    let seconds = sent.duration_since(UNIX_EPOCH).ok()?.as_secs();
    i64::try_from(seconds).ok()
}

/// The `Date` Scalr would send at `timestamp` (seconds since the Unix epoch; before it, the epoch).
fn format_date(timestamp: i64) -> String {
    let seconds = u64::try_from(timestamp).unwrap_or(0).min(LAST_DATE);
    let http = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(seconds));
    // `Fri, 08 Sep 2017 11:24:32 GMT` to `Fri 08 Sep 2017 11:24:32 UTC`.
    let without_comma = http.replacen(',', "", 1);
    match without_comma.strip_suffix(" GMT") {
        Some(rest) => format!("{rest} UTC"),
        None => without_comma,
    }
}

/// The last second `httpdate` can write (the end of the year 9999), in seconds since the epoch.
const LAST_DATE: u64 = 253_402_300_799;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::test_support::{check_at, secrets};

    // Computed independently: HMAC-SHA1("scalr-key", BODY + DATE) with Python's `hmac`.
    const SECRET: &str = "scalr-key";
    const BODY: &str = r#"{"eventName":"HostUp"}"#;
    const DATE_TEXT: &str = "Fri 08 Sep 2017 11:24:32 UTC";
    const SIGNED: &str = "52f5dad1d8ad898249be79412dca26195567d3ad";
    const NOW: i64 = 1_504_869_872;

    fn provider(keys: &[&str]) -> Scalr {
        Scalr {
            secrets: secrets(keys),
            tolerance: Duration::from_secs(300),
        }
    }

    #[test]
    fn signs_the_body_then_the_date_as_scalr_does() {
        let headers = provider(&[SECRET]).sign(BODY.as_bytes(), "", NOW);
        assert_eq!(
            headers,
            vec![
                (DATE.to_string(), DATE_TEXT.to_string()),
                (SIGNATURE.to_string(), SIGNED.to_string()),
            ]
        );
    }

    #[test]
    fn verifies_scalr_signatures_and_refuses_bad_ones() {
        let resigned = |date: &str| {
            hex::encode(hmac_digest(
                Algorithm::Sha1,
                SECRET.as_bytes(),
                &[BODY.as_bytes(), date.as_bytes()],
            ))
        };
        let wrong_weekday = "Sat 08 Sep 2017 11:24:32 UTC";
        let other_zone = "Fri 08 Sep 2017 11:24:32 PST";
        let unix_time = "1504869872";
        let (weekday_signed, zone_signed, unix_signed) = (
            resigned(wrong_weekday),
            resigned(other_zone),
            resigned(unix_time),
        );
        let upper = SIGNED.to_uppercase();
        let cases: &[(&[&str], &[(&str, &str)], i64, &str)] = &[
            (
                &[SECRET],
                &[(SIGNATURE, SIGNED), (DATE, DATE_TEXT)],
                NOW,
                "ok",
            ),
            (
                &["old", SECRET],
                &[(SIGNATURE, SIGNED), (DATE, DATE_TEXT)],
                NOW,
                "ok",
            ),
            (
                &[SECRET],
                &[(SIGNATURE, &upper), (DATE, DATE_TEXT)],
                NOW,
                "ok",
            ),
            (
                &[SECRET],
                &[(SIGNATURE, SIGNED), (DATE, DATE_TEXT)],
                NOW - 300,
                "ok",
            ),
            (
                &["wrong"],
                &[(SIGNATURE, SIGNED), (DATE, DATE_TEXT)],
                NOW,
                "signature_invalid",
            ),
            (
                &[SECRET],
                &[(SIGNATURE, SIGNED), (DATE, DATE_TEXT)],
                NOW + 301,
                "timestamp_out_of_tolerance",
            ),
            (
                &[SECRET],
                &[(SIGNATURE, SIGNED), (DATE, DATE_TEXT)],
                NOW - 301,
                "timestamp_out_of_tolerance",
            ),
            (
                &[SECRET],
                &[(SIGNATURE, SIGNED), (DATE, "Fri 08 Sep 2017 11:24:33 UTC")],
                NOW,
                "signature_invalid",
            ),
            (&[SECRET], &[(DATE, DATE_TEXT)], NOW, "signature_missing"),
            (&[SECRET], &[(SIGNATURE, SIGNED)], NOW, "signature_missing"),
            (
                &[SECRET],
                &[(SIGNATURE, &SIGNED[..38]), (DATE, DATE_TEXT)],
                NOW,
                "signature_invalid",
            ),
            (
                &[SECRET],
                &[(SIGNATURE, "sha1=52f5"), (DATE, DATE_TEXT)],
                NOW,
                "signature_invalid",
            ),
            // Signed with the right secret, but the date is not one: it fails closed.
            (
                &[SECRET],
                &[(SIGNATURE, &weekday_signed), (DATE, wrong_weekday)],
                NOW,
                "signature_invalid",
            ),
            (
                &[SECRET],
                &[(SIGNATURE, &zone_signed), (DATE, other_zone)],
                NOW,
                "signature_invalid",
            ),
            (
                &[SECRET],
                &[(SIGNATURE, &unix_signed), (DATE, unix_time)],
                NOW,
                "signature_invalid",
            ),
        ];
        for (keys, headers, now, expected) in cases {
            assert_eq!(
                check_at(&provider(keys), headers, BODY, *now),
                *expected,
                "{keys:?} {headers:?} at {now}"
            );
        }
    }

    #[test]
    fn reads_and_writes_scalr_dates() {
        let cases: &[(&str, Option<i64>)] = &[
            (DATE_TEXT, Some(NOW)),
            ("Fri 08 Sep 2017 11:24:32 GMT", Some(NOW)),
            ("Thu 01 Jan 1970 00:00:00 UTC", Some(0)),
            ("Fri, 08 Sep 2017 11:24:32 UTC", None),
            ("Fri 8 Sep 2017 11:24:32 UTC", None),
            ("Fri 08 Sep 2017 11:24:32", None),
            ("Fri 08 Sep 2017 25:24:32 UTC", None),
            ("Friday 08 Sep 2017 11:24:32 UTC", None),
            ("", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_date(text), *expected, "{text:?}");
        }
        assert_eq!(format_date(NOW), DATE_TEXT);
        assert_eq!(format_date(-5), "Thu 01 Jan 1970 00:00:00 UTC");
        assert_eq!(format_date(i64::MAX), "Fri 31 Dec 9999 23:59:59 UTC");
    }

    #[test]
    fn the_replay_key_names_the_date_and_the_body() {
        let key = |date: &str, body: &str| {
            let headers = crate::request::Headers::new([
                (SIGNATURE.to_string(), SIGNED.to_string()),
                (DATE.to_string(), date.to_string()),
            ]);
            let request = SignedRequest {
                headers: &headers,
                query: &[],
                body: body.as_bytes(),
                now: NOW,
            };
            provider(&[SECRET]).replay_key(&request).expect("a key")
        };
        let original = key(DATE_TEXT, BODY);
        assert_eq!(key(DATE_TEXT, BODY), original);
        assert_ne!(key("Fri 08 Sep 2017 11:24:33 UTC", BODY), original);
        assert_ne!(key(DATE_TEXT, "{}"), original);
        assert!(original.starts_with("signed:") && !original.contains(BODY));
    }
}
