//! How long to wait before trying again: exponential backoff with equal jitter, the receiver's
//! `Retry-After`, and an overall time budget. Plain data in, plain data out; the random draw is
//! passed in, so `send --retry`, job retries and notification deliveries share one policy and
//! its tests are deterministic.
//!
//! Equal jitter (a wait drawn between half the ceiling and the ceiling) rather than full jitter
//! (between zero and the ceiling): a retry never comes right after a failure, so a configured
//! `backoff: 10s` means at least 5 s, a target that just failed gets a breather, and a caller
//! can rely on a lower bound; half the window is still wide enough to spread the retries of many
//! senders that failed at the same moment.

use std::time::{Duration, SystemTime};

use rand::Rng;

/// Exponential backoff: the ceiling is `first` before the second try, doubles with every try
/// that failed, and never passes `max`; the wait is drawn in the upper half of the ceiling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
}

impl Backoff {
    /// A `max` below `first` is raised to `first`: the first wait is what the user asked for.
    pub fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max: max.max(first),
        }
    }

    /// The longest wait after `failed_tries` tries failed (1 before the second try; 0 counts as 1).
    pub fn ceiling(&self, failed_tries: u32) -> Duration {
        let doublings = failed_tries.saturating_sub(1);
        let factor = 2u32.checked_pow(doublings).unwrap_or(u32::MAX);
        self.first.saturating_mul(factor).min(self.max)
    }

    /// The wait after `failed_tries` tries failed: uniform between half the ceiling and the ceiling.
    pub fn delay(&self, failed_tries: u32, random: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(failed_tries);
        let half = ceiling / 2;
        let draw: f64 = random.gen();
        half + (ceiling - half).mul_f64(draw)
    }
}

/// The wait a `Retry-After` value asks for (RFC 9110 §10.2.3): delta-seconds, or an HTTP-date
/// (a date already past asks for no wait). Anything else is `None`, to be ignored.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Digits too many for a u64 still ask for a very long wait, not for none.
        let seconds = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// What to do after a try that is worth repeating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Try again after this long.
    After(Duration),
    /// Nothing is left of the time budget: no try may start.
    BudgetSpent,
    /// The receiver asked to be left alone longer than the budget has left; a try before then
    /// would be refused again, so none is made.
    AskedPastBudget { asked: Duration, left: Duration },
}

/// The wait before the next try: the longer of `backoff` and the receiver's `retry_after`, cut
/// to what is `left` of the time budget (`None`: no budget), so the last try starts at the
/// budget's end at the latest.
pub fn next(backoff: Duration, retry_after: Option<Duration>, left: Option<Duration>) -> Next {
    let wait = retry_after.map_or(backoff, |asked| asked.max(backoff));
    match (left, retry_after) {
        (None, _) => Next::After(wait),
        (Some(left), _) if left.is_zero() => Next::BudgetSpent,
        (Some(left), Some(asked)) if asked > left => Next::AskedPastBudget { asked, left },
        (Some(left), _) => Next::After(wait.min(left)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::mock::StepRng;

    const fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    const fn secs(seconds: u64) -> Duration {
        Duration::from_secs(seconds)
    }

    #[test]
    fn the_ceiling_doubles_from_the_first_delay_up_to_the_maximum() {
        let backoff = Backoff::new(secs(10), secs(60));
        let cases = [
            (0, secs(10)),
            (1, secs(10)),
            (2, secs(20)),
            (3, secs(40)),
            (4, secs(60)),
            (5, secs(60)),
            (40, secs(60)),
            (u32::MAX, secs(60)),
        ];
        for (failed_tries, expected) in cases {
            assert_eq!(
                backoff.ceiling(failed_tries),
                expected,
                "after {failed_tries}"
            );
        }
        let huge = Backoff::new(Duration::MAX / 2, Duration::MAX);
        assert_eq!(huge.ceiling(3), Duration::MAX, "saturates, never panics");
        let inverted = Backoff::new(secs(5), secs(1));
        assert_eq!(
            inverted.ceiling(3),
            secs(5),
            "a maximum below the first delay"
        );
    }

    #[test]
    fn the_wait_is_drawn_between_half_the_ceiling_and_the_ceiling() {
        let backoff = Backoff::new(secs(4), secs(600));
        // StepRng(x, 0) draws x every time; rand turns the top 53 bits into a fraction.
        let cases = [
            (1, 0, secs(2)),
            (1, 1 << 63, secs(3)),
            (2, 0, secs(4)),
            (2, 1 << 63, secs(6)),
            (3, 1 << 62, secs(10)),
        ];
        for (failed_tries, draw, expected) in cases {
            let delay = backoff.delay(failed_tries, &mut StepRng::new(draw, 0));
            assert_eq!(delay, expected, "after {failed_tries} with draw {draw:#x}");
        }
        let highest = backoff.delay(1, &mut StepRng::new(u64::MAX, 0));
        assert!(highest <= secs(4) && highest > ms(3999), "{highest:?}");
        let mut random = rand::thread_rng();
        for failed_tries in 1..12 {
            let ceiling = backoff.ceiling(failed_tries);
            let delay = backoff.delay(failed_tries, &mut random);
            assert!(
                delay >= ceiling / 2 && delay <= ceiling,
                "{delay:?} of {ceiling:?}"
            );
        }
    }

    #[test]
    fn retry_after_is_seconds_or_a_date_and_anything_else_is_ignored() {
        let now = SystemTime::UNIX_EPOCH + secs(1_445_412_480); // Wed, 21 Oct 2015 07:28:00 GMT
        let cases: &[(&str, Option<Duration>)] = &[
            ("120", Some(secs(120))),
            ("0", Some(Duration::ZERO)),
            (" 5 ", Some(secs(5))),
            ("99999999999999999999999", Some(secs(u64::MAX))),
            ("Wed, 21 Oct 2015 07:28:30 GMT", Some(secs(30))),
            ("Wednesday, 21-Oct-15 07:29:00 GMT", Some(secs(60))),
            ("Wed Oct 21 07:28:10 2015", Some(secs(10))),
            ("Wed, 21 Oct 2015 07:00:00 GMT", Some(Duration::ZERO)),
            ("Thu, 01 Jan 1970 00:00:00 GMT", Some(Duration::ZERO)),
            ("", None),
            ("-5", None),
            ("1.5", None),
            ("+3", None),
            ("10s", None),
            ("soon", None),
            ("Wed, 32 Oct 2015 07:28:30 GMT", None),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_retry_after(value, now), *expected, "`{value}`");
        }
    }

    #[test]
    fn the_wait_is_the_longer_of_backoff_and_retry_after_within_the_budget() {
        let cases = [
            // backoff, Retry-After, left of the budget, next
            (secs(2), None, None, Next::After(secs(2))),
            (secs(2), Some(secs(5)), None, Next::After(secs(5))),
            (secs(2), Some(secs(1)), None, Next::After(secs(2))),
            (secs(2), Some(Duration::ZERO), None, Next::After(secs(2))),
            (secs(2), None, Some(secs(10)), Next::After(secs(2))),
            (secs(2), Some(secs(5)), Some(secs(10)), Next::After(secs(5))),
            (
                secs(2),
                Some(secs(10)),
                Some(secs(10)),
                Next::After(secs(10)),
            ),
            (secs(8), None, Some(secs(3)), Next::After(secs(3))),
            (secs(8), Some(secs(1)), Some(secs(3)), Next::After(secs(3))),
            (
                secs(2),
                Some(secs(30)),
                Some(secs(10)),
                Next::AskedPastBudget {
                    asked: secs(30),
                    left: secs(10),
                },
            ),
            (secs(2), None, Some(Duration::ZERO), Next::BudgetSpent),
            (
                secs(2),
                Some(secs(30)),
                Some(Duration::ZERO),
                Next::BudgetSpent,
            ),
        ];
        for (backoff, retry_after, left, expected) in cases {
            assert_eq!(
                next(backoff, retry_after, left),
                expected,
                "{backoff:?} {retry_after:?} {left:?}"
            );
        }
    }
}
