//! A keyed limiter's state with a ceiling on how many keys it tracks, so that a flood from ever
//! new addresses cannot grow it without bound.

use std::hash::Hash;

use governor::nanos::Nanos;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::StateStore;

/// governor's `DashMap` store, except that once it holds `capacity` keys a key it does not hold
/// yet is counted under `overflow` (so it holds at most `capacity` keys and that one), one allowance that all such newcomers share, until
/// `retain_recent` forgets idle keys and makes room. Keys already tracked keep their own
/// allowance: a full table never refuses a known client for someone else's flood, and never
/// lets newcomers through unlimited.
pub struct CappedStore<K: Hash + Eq> {
    keys: DashMapStateStore<K>,
    capacity: usize,
    overflow: K,
}

impl<K: Hash + Eq + Clone> CappedStore<K> {
    pub fn new(capacity: usize, overflow: K) -> CappedStore<K> {
        CappedStore {
            keys: DashMapStateStore::default(),
            capacity: capacity.max(1),
            overflow,
        }
    }

    /// The key a request is counted under: its own, or `overflow` when the table is full.
    fn slot<'k>(&'k self, key: &'k K) -> &'k K {
        // `contains_key` first: the common case, a known key, then costs no count of the table.
        if self.keys.contains_key(key) || self.keys.len() < self.capacity {
            key
        } else {
            &self.overflow
        }
    }
}

impl<K: Hash + Eq + Clone> StateStore for CappedStore<K> {
    type Key = K;

    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        self.keys.measure_and_replace(self.slot(key), f)
    }
}

impl<K: Hash + Eq + Clone> ShrinkableKeyedStateStore<K> for CappedStore<K> {
    fn retain_recent(&self, drop_below: Nanos) {
        self.keys.retain_recent(drop_below);
    }

    fn shrink_to_fit(&self) {
        self.keys.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.keys.len()
    }

    fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}
