//! How fast sign-ins are tried: each client address may try [`PER_CLIENT`] times a minute, and
//! the server [`OVERALL`] times a minute in all, with the right token or not. Past either, a
//! sign-in is refused before the token is looked at, so guessing goes no faster from many
//! connections (each wrong token is also answered after a delay) nor from many addresses.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Sign-ins per minute from one client address (a whole IPv6 /64 counts as one).
const PER_CLIENT: u32 = 10;
/// Sign-ins per minute from everyone.
const OVERALL: u32 = 60;

/// The sign-in limits of this instance.
pub struct SignInThrottle {
    per_client: DefaultKeyedRateLimiter<Option<IpAddr>>,
    overall: DefaultDirectRateLimiter,
}

impl Default for SignInThrottle {
    fn default() -> SignInThrottle {
        let per_minute = |n: u32| Quota::per_minute(NonZeroU32::new(n).expect("a positive quota"));
        SignInThrottle {
            per_client: RateLimiter::keyed(per_minute(PER_CLIENT)),
            overall: RateLimiter::direct(per_minute(OVERALL)),
        }
    }
}

impl SignInThrottle {
    /// Counts a sign-in from `client` (`None`: an address nobody vouches for). `Err` says how long
    /// to wait before the next one is taken.
    pub fn try_sign_in(&self, client: Option<IpAddr>) -> Result<(), Duration> {
        let now = governor::clock::Clock::now(&governor::clock::DefaultClock::default());
        let key = client.map(crate::rate_limit::client_network);
        // Forget addresses that are quiet again, so the map stays as small as the attack.
        if self.per_client.len() > 10_000 {
            self.per_client.retain_recent();
        }
        self.per_client
            .check_key(&key)
            .and_then(|()| self.overall.check())
            .map_err(|not_until| not_until.wait_time_from(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_gets_its_own_allowance_and_everyone_shares_one() {
        let throttle = SignInThrottle::default();
        let one: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..PER_CLIENT {
            assert!(throttle.try_sign_in(Some(one)).is_ok());
        }
        let wait = throttle
            .try_sign_in(Some(one))
            .expect_err("over the client's allowance");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(60),
            "{wait:?}"
        );
        // Another /64 is another client; the same /64 is the same one.
        let same: IpAddr = "2001:db8::1".parse().unwrap();
        let neighbour: IpAddr = "2001:db8::ffff:1".parse().unwrap();
        let other: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        for _ in 0..PER_CLIENT {
            assert!(throttle.try_sign_in(Some(same)).is_ok());
        }
        assert!(throttle.try_sign_in(Some(neighbour)).is_err());
        assert!(throttle.try_sign_in(Some(other)).is_ok());
        // Many addresses together stop at the overall allowance.
        let mut taken = 2 * PER_CLIENT + 1;
        let mut refused = false;
        for n in 0..255u8 {
            let address = IpAddr::from([198, 51, 100, n]);
            match throttle.try_sign_in(Some(address)) {
                Ok(()) => taken += 1,
                Err(_) => {
                    refused = true;
                    break;
                }
            }
        }
        assert!(refused, "never refused");
        assert_eq!(taken, OVERALL);
    }
}
