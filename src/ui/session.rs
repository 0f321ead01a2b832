//! The web page's session: a stateless signed cookie value, so that any instance behind one load
//! balancer accepts it and a restart keeps it. It holds an expiry and a random id, MAC'd with a
//! key derived from the admin token; changing the token signs everyone out.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// How long a session lasts from sign-in.
pub const LIFETIME_SECS: i64 = 12 * 3600;

const VERSION: &str = "v1";

/// The key sessions and CSRF tokens are MAC'd with, derived from the admin token.
pub struct SessionKey([u8; 32]);

/// A session whose MAC and expiry were checked.
#[derive(Debug, PartialEq, Eq)]
pub struct Session {
    id: String,
    pub expires_secs: i64,
}

impl SessionKey {
    pub fn derive(admin_token: &[u8]) -> SessionKey {
        SessionKey(mac(admin_token, b"hookrunner ui session key v1"))
    }

    /// A new cookie value for the random `id`, valid until `now_secs` plus the lifetime.
    pub fn issue(&self, id: [u8; 16], now_secs: i64) -> String {
        let payload = format!("{VERSION}.{}.{}", now_secs + LIFETIME_SECS, hex::encode(id));
        let tag = hex::encode(mac(&self.0, payload.as_bytes()));
        format!("{payload}.{tag}")
    }

    /// The session in a cookie value, when its MAC is right and it has not expired at `now_secs`.
    pub fn verify(&self, value: &str, now_secs: i64) -> Option<Session> {
        let (payload, tag) = value.rsplit_once('.')?;
        let tag = hex::decode(tag).ok()?;
        let expected = mac(&self.0, payload.as_bytes());
        if !bool::from(expected.as_slice().ct_eq(tag.as_slice())) {
            return None;
        }
        let mut parts = payload.split('.');
        let (version, expires, id) = (parts.next()?, parts.next()?, parts.next()?);
        let expires_secs: i64 = expires.parse().ok()?;
        (version == VERSION && parts.next().is_none() && now_secs < expires_secs).then(|| Session {
            id: id.to_string(),
            expires_secs,
        })
    }

    /// The CSRF token of `session`: the same for the whole session, different for every other.
    pub fn csrf_token(&self, session: &Session) -> String {
        hex::encode(mac(&self.0, format!("csrf.{}", session.id).as_bytes()))
    }

    /// Whether `given` is the CSRF token of `session`, compared in constant time.
    pub fn csrf_matches(&self, session: &Session, given: &str) -> bool {
        bool::from(self.csrf_token(session).as_bytes().ct_eq(given.as_bytes()))
    }
}

fn mac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;
    const ID: [u8; 16] = [7; 16];

    fn check(value: &str, now_secs: i64, accepted: bool) {
        let key = SessionKey::derive(b"admin-s3cret");
        assert_eq!(
            key.verify(value, now_secs).is_some(),
            accepted,
            "{value} at {now_secs}"
        );
    }

    #[test]
    fn accepts_only_untampered_unexpired_sessions_of_the_same_token() {
        let key = SessionKey::derive(b"admin-s3cret");
        let good = key.issue(ID, NOW);
        let other_token = SessionKey::derive(b"another-token").issue(ID, NOW);
        let (payload, tag) = good.rsplit_once('.').unwrap();
        let later_expiry = good.replacen(
            &(NOW + LIFETIME_SECS).to_string(),
            &(NOW + 10 * LIFETIME_SECS).to_string(),
            1,
        );
        let mut flipped_tag = tag.to_string();
        flipped_tag.replace_range(0..1, if tag.starts_with('0') { "1" } else { "0" });
        let cases: &[(&str, String, i64, bool)] = &[
            ("fresh", good.clone(), NOW, true),
            (
                "a second before expiry",
                good.clone(),
                NOW + LIFETIME_SECS - 1,
                true,
            ),
            ("at expiry", good.clone(), NOW + LIFETIME_SECS, false),
            (
                "after expiry",
                good.clone(),
                NOW + LIFETIME_SECS + 60,
                false,
            ),
            ("another admin token", other_token, NOW, false),
            ("expiry pushed out", later_expiry, NOW, false),
            (
                "tag flipped",
                format!("{payload}.{flipped_tag}"),
                NOW,
                false,
            ),
            (
                "tag cut short",
                format!("{payload}.{}", &tag[..10]),
                NOW,
                false,
            ),
            ("no tag", payload.to_string(), NOW, false),
            ("empty", String::new(), NOW, false),
            ("garbage", "v1.x.y.z".into(), NOW, false),
        ];
        for (name, value, now, accepted) in cases {
            eprintln!("case: {name}");
            check(value, *now, *accepted);
        }
    }

    #[test]
    fn the_csrf_token_belongs_to_one_session() {
        let key = SessionKey::derive(b"admin-s3cret");
        let one = key.verify(&key.issue([1; 16], NOW), NOW).unwrap();
        let two = key.verify(&key.issue([2; 16], NOW), NOW).unwrap();
        let token = key.csrf_token(&one);
        assert!(key.csrf_matches(&one, &token));
        assert!(!key.csrf_matches(&two, &token));
        assert!(!key.csrf_matches(&one, ""));
        assert!(!SessionKey::derive(b"other").csrf_matches(&one, &token));
    }
}
