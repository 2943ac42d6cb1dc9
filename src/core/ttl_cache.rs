//! A small per-isolate cache: each entry lasts until its own deadline, and when the cache is
//! full the least recently used entry goes first. Time is passed in.

use std::{collections::HashMap, hash::Hash};

use crate::core::time::UnixMillis;

#[derive(Debug)]
pub struct TtlCache<K, V> {
    entries: HashMap<K, Entry<V>>,
    capacity: usize,
    /// Advances on every hit and insert: the recency of each entry.
    clock: u64,
}

#[derive(Debug)]
struct Entry<V> {
    value: V,
    until: UnixMillis,
    used: u64,
}

impl<K: Hash + Eq + Clone, V> TtlCache<K, V> {
    pub fn new(capacity: usize) -> Self {
        TtlCache {
            entries: HashMap::new(),
            capacity,
            clock: 0,
        }
    }

    /// The live entry for `key`, marked as just used; an expired one is dropped.
    pub fn get_mut(&mut self, key: &K, now: UnixMillis) -> Option<&mut V> {
        self.clock += 1;
        let live = self.entries.get(key).map(|e| now < e.until)?;
        if !live {
            self.entries.remove(key);
            return None;
        }
        let entry = self.entries.get_mut(key)?;
        entry.used = self.clock;
        Some(&mut entry.value)
    }

    /// Keeps `value` until `until` (nothing is kept for a deadline already past), making
    /// room first: expired entries, then the least recently used.
    pub fn insert(&mut self, key: K, value: V, until: UnixMillis, now: UnixMillis) {
        if until <= now {
            self.entries.remove(&key);
            return;
        }
        self.clock += 1;
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            self.entries.retain(|_, e| now < e.until);
            if self.entries.len() >= self.capacity {
                if let Some(oldest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.used)
                    .map(|(k, _)| k.clone())
                {
                    self.entries.remove(&oldest);
                }
            }
        }
        self.entries.insert(
            key,
            Entry {
                value,
                until,
                used: self.clock,
            },
        );
    }

    pub fn remove(&mut self, key: &K) {
        self.entries.remove(key);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.values().map(|e| &e.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_lasts_until_its_deadline() {
        let mut cache = TtlCache::new(4);
        cache.insert("a", 1, 100, 0);
        assert_eq!(cache.get_mut(&"a", 99).copied(), Some(1));
        assert_eq!(cache.get_mut(&"a", 100), None);
        assert!(cache.is_empty());
        // A deadline already past keeps nothing, and replaces what was there.
        cache.insert("b", 2, 50, 0);
        cache.insert("b", 3, 10, 10);
        assert_eq!(cache.get_mut(&"b", 10), None);
    }

    #[test]
    fn a_full_cache_drops_the_expired_then_the_least_recently_used() {
        let mut cache = TtlCache::new(3);
        cache.insert(1, "one", 1_000, 0);
        cache.insert(2, "two", 1_000, 0);
        cache.insert(3, "three", 5, 0);
        // Full: the expired entry goes, nothing else.
        cache.insert(4, "four", 1_000, 10);
        assert_eq!(cache.len(), 3);
        assert!(cache.get_mut(&3, 10).is_none());
        // Full again: 1 was used last, so 2 goes.
        assert!(cache.get_mut(&1, 11).is_some());
        cache.insert(5, "five", 1_000, 12);
        assert_eq!(cache.len(), 3);
        assert!(cache.get_mut(&2, 12).is_none());
        assert!(cache.get_mut(&1, 12).is_some());
        // Replacing a present key makes no room.
        cache.insert(5, "FIVE", 1_000, 13);
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get_mut(&5, 13).copied(), Some("FIVE"));
    }
}
