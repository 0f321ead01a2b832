//! Refused requests are not logged one line each: they are counted per client, hook and limit,
//! and each count is written as one summary line per interval, so a flood neither fills the
//! disk nor slows the server down with writing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::Scope;

/// How long a count gathers before its first line: a burst of refusals is one line, not many.
pub const FIRST_DELAY: Duration = Duration::from_secs(1);
/// The shortest time between two lines about the same client, hook and limit.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// The most clients counted by name at a time; refusals of further ones are counted together
/// as "other addresses", so the table and the lines per interval stay bounded under a flood
/// from many addresses.
pub const MAX_CLIENTS: usize = 100;

/// Who was refused, where, by which limit. `client` is `None` for an unknown address, or in the
/// count of other addresses.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Subject {
    client: Option<IpAddr>,
    hook: String,
    scope: Scope,
}

/// The refusals of one subject since its last line.
#[derive(Debug)]
struct Tally {
    count: u64,
    /// When the first refusal counted in `count` came.
    since: Instant,
    /// When its last line was written.
    reported: Option<Instant>,
}

impl Tally {
    fn due(&self, now: Instant) -> bool {
        self.count > 0
            && now.saturating_duration_since(self.since) >= FIRST_DELAY
            && self.interval_over(now)
    }

    /// Whether an interval has passed since the last line (or there was none).
    fn interval_over(&self, now: Instant) -> bool {
        self.reported
            .is_none_or(|at| now.saturating_duration_since(at) >= INTERVAL)
    }

    /// Whether nothing is left to report and the next refusal may be written without waiting.
    fn spent(&self, now: Instant) -> bool {
        self.count == 0 && self.interval_over(now)
    }
}

/// One summary line's content.
#[derive(Debug, PartialEq, Eq)]
pub struct Line {
    /// The client; `None` with `others` false is an unknown address.
    pub client: Option<IpAddr>,
    /// The count is of addresses beyond [`MAX_CLIENTS`], not of one client.
    pub others: bool,
    pub hook: String,
    pub scope: Scope,
    pub count: u64,
}

impl Line {
    /// Writes the line to the log.
    pub fn log(&self) {
        let from = match (self.others, self.client) {
            (true, _) => "other addresses".to_string(),
            // An IPv6 client is counted, and named, by its /64.
            (false, Some(IpAddr::V6(network))) => format!("{network}/64"),
            (false, Some(client)) => client.to_string(),
            (false, None) => "an unknown address".to_string(),
        };
        let to = match self.hook.as_str() {
            "" => "hooks that do not exist",
            hook => hook,
        };
        tracing::warn!(
            requests = self.count,
            client = %from,
            hook = %self.hook,
            limit = self.scope.key(),
            "rate limited: {} requests from {from} to {to} ({})",
            self.count,
            self.scope.key()
        );
    }
}

/// The counts not written yet.
#[derive(Default)]
pub struct Summary {
    tallies: Mutex<Tallies>,
}

#[derive(Default)]
struct Tallies {
    /// By client; at most [`MAX_CLIENTS`] distinct clients.
    clients: HashMap<Subject, Tally>,
    /// Beyond them, by hook and limit alone.
    others: HashMap<Subject, Tally>,
}

impl Summary {
    /// Counts one refused request.
    pub fn record(&self, client: Option<IpAddr>, hook: &str, scope: Scope, now: Instant) {
        let mut subject = Subject {
            client: client.map(super::client_network),
            hook: hook.to_string(),
            scope,
        };
        let mut tallies = self.tallies.lock().unwrap_or_else(PoisonError::into_inner);
        let known = tallies.clients.contains_key(&subject);
        let table = if known || tallies.clients.len() < MAX_CLIENTS {
            &mut tallies.clients
        } else {
            subject.client = None;
            &mut tallies.others
        };
        let tally = table.entry(subject).or_insert(Tally {
            count: 0,
            since: now,
            reported: None,
        });
        if tally.count == 0 {
            tally.since = now;
        }
        tally.count += 1;
    }

    /// The lines due now, their counts reset; subjects with nothing left to say are forgotten.
    pub fn take_due(&self, now: Instant) -> Vec<Line> {
        let mut guard = self.tallies.lock().unwrap_or_else(PoisonError::into_inner);
        let tallies = &mut *guard;
        let mut lines = Vec::new();
        for (others, table) in [(false, &mut tallies.clients), (true, &mut tallies.others)] {
            for (subject, tally) in table.iter_mut() {
                if tally.due(now) {
                    lines.push(Line {
                        client: subject.client,
                        others,
                        hook: subject.hook.clone(),
                        scope: subject.scope,
                        count: std::mem::take(&mut tally.count),
                    });
                    tally.reported = Some(now);
                }
            }
            table.retain(|_, tally| !tally.spent(now));
        }
        lines
    }

    /// Every count not written yet, due or not (at shutdown).
    pub fn take_all(&self) -> Vec<Line> {
        let far = Instant::now() + INTERVAL + FIRST_DELAY;
        self.take_due(far)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(lines: &[Line]) -> Vec<(Option<IpAddr>, bool, u64)> {
        let mut counts: Vec<_> = lines
            .iter()
            .map(|line| (line.client, line.others, line.count))
            .collect();
        counts.sort();
        counts
    }

    #[test]
    fn a_burst_is_one_line_and_a_flood_one_line_per_interval() {
        let summary = Summary::default();
        let start = Instant::now();
        let client: Option<IpAddr> = Some("192.0.2.1".parse().unwrap());
        for _ in 0..500 {
            summary.record(client, "deploy", Scope::Ip, start);
        }
        assert_eq!(summary.take_due(start), [], "the burst is still gathering");
        let first = summary.take_due(start + FIRST_DELAY);
        assert_eq!(counts(&first), [(client, false, 500)]);
        assert_eq!(first[0].hook.as_str(), "deploy", "the line names the hook");
        // The flood goes on: its next line waits for the interval.
        for second in 2..10 {
            summary.record(
                client,
                "deploy",
                Scope::Ip,
                start + Duration::from_secs(second),
            );
            assert_eq!(summary.take_due(start + Duration::from_secs(second)), []);
        }
        let next = summary.take_due(start + FIRST_DELAY + INTERVAL);
        assert_eq!(counts(&next), [(client, false, 8)]);
        // Quiet for an interval: forgotten, and a new burst is written after its first delay.
        let later = start + FIRST_DELAY + 3 * INTERVAL;
        assert_eq!(summary.take_due(later), []);
        assert!(summary.tallies.lock().unwrap().clients.is_empty());
    }

    #[test]
    fn clients_beyond_the_maximum_are_counted_together() {
        let summary = Summary::default();
        let start = Instant::now();
        for n in 0..(MAX_CLIENTS as u32 + 1000) {
            let client = IpAddr::from((0x0a00_0000 + n).to_be_bytes());
            summary.record(Some(client), "deploy", Scope::Hook, start);
        }
        summary.record(None, "deploy", Scope::Hook, start);
        let lines = summary.take_due(start + FIRST_DELAY);
        assert_eq!(lines.len(), MAX_CLIENTS + 1);
        let others: Vec<_> = lines.iter().filter(|line| line.others).collect();
        assert_eq!(others.len(), 1);
        assert_eq!(
            others[0].count, 1001,
            "the unknown address is among the others"
        );
        assert_eq!(summary.take_all(), []);
    }
}
