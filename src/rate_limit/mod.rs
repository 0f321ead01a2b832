//! Rate limits (SPEC §17): `server.rate_limit.per_ip`, one allowance per client address for all
//! hooks together, and a hook's `rate_limit.per_hook`, one allowance for all its requests. A
//! request beyond either is refused (429) before anything else is done with it.
//!
//! Each allowance is a `governor` limiter: the GCRA keeps one timestamp per key and decides with
//! one atomic compare-and-swap, so a check is cheap under a flood and needs no background task
//! to refill buckets. Memory stays bounded: idle addresses are forgotten every [`SWEEP_EVERY`]
//! checks, and at most [`MAX_CLIENTS`] addresses are tracked at once (see [`CappedStore`]).

mod capped;
mod summary;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use self::capped::CappedStore;
pub use self::summary::{Line, Summary};
use crate::config::{Config, RateLimit};

/// The most client addresses tracked at once. Beyond, new addresses share one allowance until
/// idle ones are forgotten; 100 000 keys take a few megabytes.
pub const MAX_CLIENTS: usize = 100_000;
/// How many checks pass between two sweeps of the idle addresses.
pub const SWEEP_EVERY: u64 = 4096;

/// Which limit refused a request: the client's (`per_ip`) or the hook's (`per_hook`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Ip,
    Hook,
}

impl Scope {
    /// The `scope` label of `hookrunner_rate_limited_total`.
    pub fn label(self) -> &'static str {
        match self {
            Scope::Ip => "ip",
            Scope::Hook => "hook",
        }
    }

    /// The config key of the limit, as the log and the answer name it.
    pub fn key(self) -> &'static str {
        match self {
            Scope::Ip => "per_ip",
            Scope::Hook => "per_hook",
        }
    }
}

/// A refusal: which limit, and how long until a request would be taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused {
    pub scope: Scope,
    pub retry_after: Duration,
}

impl Refused {
    /// `Retry-After` in whole seconds, rounded up, at least one.
    pub fn retry_after_seconds(&self) -> u64 {
        let seconds = self.retry_after.as_secs();
        let rounded = seconds + u64::from(self.retry_after.subsec_nanos() > 0);
        rounded.max(1)
    }
}

/// Whose allowance a request takes under `per_ip`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// A client address; an IPv6 client by its /64 (see [`client_network`]).
    Address(IpAddr),
    /// Every request whose address is unknown (a `unix:` listener without a trusted proxy, or a
    /// forwarded chain that does not parse) shares this one.
    Unknown,
    /// New addresses while [`MAX_CLIENTS`] are tracked share this one.
    Overflow,
}

impl ClientKey {
    pub fn of(client: Option<IpAddr>) -> ClientKey {
        client.map_or(ClientKey::Unknown, |address| {
            ClientKey::Address(client_network(address))
        })
    }
}

/// The part of an address one client holds: the address itself for IPv4, its /64 for IPv6 (a
/// host usually has a whole /64 to pick from, so counting each address apart would let one
/// client through a limit by changing its address).
pub fn client_network(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

type ClientLimiter = RateLimiter<ClientKey, CappedStore<ClientKey>, DefaultClock>;

/// `per_ip`: one allowance per client.
struct PerClient {
    limit: RateLimit,
    limiter: ClientLimiter,
    checks: AtomicU64,
}

impl PerClient {
    fn new(limit: RateLimit, capacity: usize) -> PerClient {
        PerClient {
            limit,
            limiter: RateLimiter::new(
                quota(limit),
                CappedStore::new(capacity, ClientKey::Overflow),
                DefaultClock::default(),
            ),
            checks: AtomicU64::new(0),
        }
    }

    fn check(&self, key: &ClientKey) -> Result<(), Duration> {
        // Forget the addresses whose allowance is whole again: they are no different from new.
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.limiter.retain_recent();
        }
        let clock = self.limiter.clock();
        self.limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(clock.now()))
    }
}

/// `per_hook`: one allowance for a hook.
struct PerHook {
    limit: RateLimit,
    limiter: DefaultDirectRateLimiter,
}

fn quota(limit: RateLimit) -> Quota {
    // The period is at least a second and the count at most a million, so the replenish interval
    // is at least a microsecond, never zero.
    Quota::with_period(limit.period / limit.count.get())
        .unwrap_or_else(|| Quota::per_second(limit.count))
        .allow_burst(limit.burst)
}

/// The limits now in force, and the refusals not yet written to the log.
pub struct RateLimits {
    per_client: RwLock<Option<Arc<PerClient>>>,
    per_hook: RwLock<HashMap<String, Arc<PerHook>>>,
    /// The most clients `per_ip` tracks (tests make it small).
    capacity: usize,
    summary: Summary,
}

impl RateLimits {
    /// The limits of `config`.
    pub fn new(config: &Config) -> RateLimits {
        RateLimits::with_capacity(config, MAX_CLIENTS)
    }

    fn with_capacity(config: &Config, capacity: usize) -> RateLimits {
        let limits = RateLimits {
            per_client: RwLock::new(None),
            per_hook: RwLock::new(HashMap::new()),
            capacity,
            summary: Summary::default(),
        };
        limits.apply(config);
        limits
    }

    /// Takes the limits of a reloaded config. A limit written the same keeps its counts, so a
    /// reload is no way around it; a changed one starts afresh at once.
    pub fn apply(&self, config: &Config) {
        {
            let mut per_client = self
                .per_client
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let kept = per_client.as_ref().map(|current| current.limit);
            if kept != config.server.rate_limit {
                *per_client = config
                    .server
                    .rate_limit
                    .map(|limit| Arc::new(PerClient::new(limit, self.capacity)));
            }
        }
        let mut per_hook = self
            .per_hook
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let mut fresh = HashMap::new();
        for hook in &config.hooks {
            let Some(limit) = hook.rate_limit else {
                continue;
            };
            let limiter = match per_hook.remove(&hook.id) {
                Some(current) if current.limit == limit => current,
                _ => Arc::new(PerHook {
                    limit,
                    limiter: RateLimiter::direct(quota(limit)),
                }),
            };
            fresh.insert(hook.id.clone(), limiter);
        }
        *per_hook = fresh;
    }

    /// Counts a request to `hook` from `client` (`None`: an unknown address) against the client's
    /// limit, then the hook's. A request the client's limit refuses takes nothing from the
    /// hook's, so one flooding client cannot use up a hook for everyone else faster than its own
    /// limit lets it.
    pub fn check(&self, hook: &str, client: Option<IpAddr>) -> Result<(), Refused> {
        let per_client = self
            .per_client
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(per_client) = per_client {
            per_client
                .check(&ClientKey::of(client))
                .map_err(|retry_after| self.refused(Scope::Ip, retry_after, hook, client))?;
        }
        let per_hook = self
            .per_hook
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(hook)
            .cloned();
        if let Some(per_hook) = per_hook {
            let clock = per_hook.limiter.clock();
            per_hook.limiter.check().map_err(|not_until| {
                let retry_after = not_until.wait_time_from(clock.now());
                self.refused(Scope::Hook, retry_after, hook, client)
            })?;
        }
        Ok(())
    }

    fn refused(
        &self,
        scope: Scope,
        retry_after: Duration,
        hook: &str,
        client: Option<IpAddr>,
    ) -> Refused {
        self.summary.record(client, hook, scope, Instant::now());
        Refused { scope, retry_after }
    }

    /// Writes the summary lines that are due, every second, until the task is dropped.
    pub async fn report_refusals(&self) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            for line in self.summary.take_due(Instant::now()) {
                line.log();
            }
        }
    }

    /// Writes every count not written yet (at shutdown).
    pub fn report_remaining(&self) {
        for line in self.summary.take_all() {
            line.log();
        }
    }

    /// How many client keys `per_ip` tracks now.
    #[cfg(test)]
    fn tracked_clients(&self) -> usize {
        self.per_client
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map_or(0, |per_client| per_client.limiter.len())
    }
}

#[cfg(test)]
mod tests;
