//! Errors the HTTP stack logs once per event, which a client (or a lack of file descriptors) can
//! repeat at will: counted, and reported as one summary line per kind and interval instead.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// A kind's first summary comes within `TICK`; the next ones at most once per `INTERVAL`.
const INTERVAL: Duration = Duration::from_secs(60);
const TICK: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Noise {
    /// actix-server could not accept a connection (most often `EMFILE`: out of file
    /// descriptors). It stops accepting for 500 ms and tries again, logging every failure.
    Accept,
    /// actix-http closed a connection on an error: a malformed request line or header, a body
    /// cut short, a response stream that failed. Logged once per connection.
    Protocol,
}

impl Noise {
    const ALL: [Noise; 2] = [Noise::Accept, Noise::Protocol];

    /// Which noise an event is, from the module that logged it and its level.
    fn of(target: &str, level: Level) -> Option<Noise> {
        if level != Level::ERROR {
            return None;
        }
        if target == "actix_server::accept" {
            Some(Noise::Accept)
        } else if target.starts_with("actix_http::h1") {
            Some(Noise::Protocol)
        } else {
            None
        }
    }

    fn report(self, count: u64, last: &str) {
        match self {
            Noise::Accept => {
                let last = last.strip_prefix("Error accepting connection: ").unwrap_or(last);
                tracing::error!(
                    failures = count,
                    "cannot accept connections: {last}; {count} attempts failed since the last report, and new connections wait in the listen backlog meanwhile; if descriptors run out, raise the open-file limit (`LimitNOFILE=` in the service, `ulimit -n`)"
                );
            }
            Noise::Protocol => tracing::warn!(
                connections = count,
                "{count} connections ended with an HTTP protocol error (such as a malformed request line or header) since the last report; the last: {last}"
            ),
        }
    }
}

/// How many times a kind of noise happened since its last report, and its last message.
#[derive(Debug, Default)]
struct Tally {
    count: u64,
    last: String,
    reported: Option<Instant>,
}

impl Tally {
    /// The count and last message to report now, if any: at once the first time, then no more
    /// often than `INTERVAL`.
    fn take_due(&mut self, now: Instant) -> Option<(u64, String)> {
        let due = match self.reported {
            None => true,
            Some(at) => now.saturating_duration_since(at) >= INTERVAL,
        };
        if self.count == 0 || !due {
            return None;
        }
        self.reported = Some(now);
        Some((
            std::mem::take(&mut self.count),
            std::mem::take(&mut self.last),
        ))
    }
}

type Tallies = Arc<Mutex<[Tally; 2]>>;

/// Drops the noisy events before any layer formats them, and counts them for the reporter.
pub struct NoiseLayer {
    tallies: Tallies,
}

/// The layer, and a thread that writes the summaries.
pub fn layer() -> NoiseLayer {
    let tallies = Tallies::default();
    let reporter = Arc::clone(&tallies);
    let spawned = std::thread::Builder::new()
        .name("log-summary".into())
        .spawn(move || loop {
            std::thread::sleep(TICK);
            report_due(&reporter, Instant::now());
        });
    if let Err(error) = spawned {
        eprintln!("cannot start the log summary thread: {error}");
    }
    NoiseLayer { tallies }
}

fn report_due(tallies: &Mutex<[Tally; 2]>, now: Instant) {
    let due: Vec<_> = {
        let mut tallies = tallies.lock().unwrap_or_else(PoisonError::into_inner);
        Noise::ALL
            .iter()
            .filter_map(|&noise| {
                let (count, last) = tallies[noise as usize].take_due(now)?;
                Some((noise, count, last))
            })
            .collect()
    };
    // Logged outside the lock: the layer takes it for every event.
    for (noise, count, last) in due {
        noise.report(count, &last);
    }
}

impl<S: Subscriber> Layer<S> for NoiseLayer {
    fn event_enabled(&self, event: &Event<'_>, _context: Context<'_, S>) -> bool {
        let metadata = event.metadata();
        let Some(noise) = Noise::of(metadata.target(), *metadata.level()) else {
            return true;
        };
        let mut message = Message::default();
        event.record(&mut message);
        let mut tallies = self.tallies.lock().unwrap_or_else(PoisonError::into_inner);
        let tally = &mut tallies[noise as usize];
        tally.count += 1;
        tally.last = message.0;
        false
    }
}

#[derive(Default)]
struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_http_stacks_per_event_errors_are_noise() {
        let cases = [
            ("actix_server::accept", Level::ERROR, Some(Noise::Accept)),
            (
                "actix_http::h1::dispatcher",
                Level::ERROR,
                Some(Noise::Protocol),
            ),
            (
                "actix_http::h1::decoder",
                Level::ERROR,
                Some(Noise::Protocol),
            ),
            ("actix_http::h1::dispatcher", Level::TRACE, None),
            ("actix_server::worker", Level::ERROR, None),
            ("hookrunner::engine", Level::ERROR, None),
        ];
        for (target, level, expected) in cases {
            assert_eq!(Noise::of(target, level), expected, "{target} at {level}");
        }
    }

    #[test]
    fn a_tally_is_reported_at_once_then_at_most_once_per_interval() {
        let start = Instant::now();
        let mut tally = Tally::default();
        assert_eq!(tally.take_due(start), None, "nothing happened");
        tally.count = 3;
        tally.last = "third".into();
        assert_eq!(tally.take_due(start), Some((3, "third".into())));
        tally.count = 5;
        let soon = start + INTERVAL / 2;
        assert_eq!(tally.take_due(soon), None, "too soon after the last report");
        let later = start + INTERVAL;
        assert_eq!(tally.take_due(later).map(|(count, _)| count), Some(5));
        assert_eq!(tally.take_due(later + INTERVAL), None, "nothing new");
    }
}
