//! The per-IP limit's rules: it guards the unauthenticated surface and key guessing, and
//! nothing else.
//!
//! - Anonymous requests and failed authentications are counted in the address's window
//!   (its limiter object), 40 per 10 s with a 10 s cooldown.
//! - A verified JWT or a key that authenticates is charged to its principal only: no call
//!   to the address's object on the request path.
//! - During a cooldown a key is looked up in D1 only if it authenticated from that address
//!   in the last 10 minutes. The address's object keeps those keys ([`KnownKeys`]); an
//!   isolate that learned of a cooldown ([`IsolateMemory`]) asks it before refusing.
//!
//! Pure: the edge keeps an [`IsolateMemory`] per isolate and a [`KnownKeys`] per object.

use std::collections::HashMap;

use serde_json::Value;

use super::{
    json::{self, Obj},
    time::UnixMillis,
};

/// A key that authenticated from an address counts there for this long.
pub const KNOWN_FOR_MS: i64 = 10 * 60 * 1000;
/// The most keys one address remembers; the least recently seen goes first.
pub const MAX_KNOWN: usize = 256;
/// An isolate reports a key's success from an address at most this often.
pub const REPORT_EVERY_MS: i64 = 5 * 60 * 1000;
/// The most addresses and (address, key) pairs one isolate remembers.
const MAX_REMEMBERED: usize = 10_000;

/// How a request presents itself to the limiters, known before any I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// No credential: an open route, or a missing `Authorization` header.
    Anonymous,
    /// A credential refused without I/O: malformed, a bad JWT, a bad key checksum.
    Failed,
    /// A JWT whose signature and claims verified.
    Session,
    /// A well-formed `sk-`/`dk-` key; only D1 can say whether it exists.
    Key,
}

impl Caller {
    /// Counted in the address's window before the handler runs.
    pub fn charged_to_ip(self) -> bool {
        matches!(self, Caller::Anonymous | Caller::Failed)
    }
}

/// The keys (by SHA-256) that authenticated from one address, with when they last did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownKeys {
    entries: Vec<(String, UnixMillis)>,
}

impl KnownKeys {
    /// `{"entries": [[hash, last seen], …]}`.
    pub fn to_json(&self) -> String {
        let entries = json::array(&self.entries, |o, (hash, at)| {
            o.push('[');
            json::quote(o, hash);
            o.push_str(&format!(",{at}]"));
        });
        Obj::new().raw("entries", &entries).done()
    }

    pub fn from_json(v: &Value) -> Option<KnownKeys> {
        let hash = |h: &Value| Some(h.as_str()?.to_string());
        Some(KnownKeys {
            entries: json::pairs(v, "entries", hash, Value::as_i64)?,
        })
    }

    pub fn record(&mut self, hash: &str, now: UnixMillis) {
        self.prune(now);
        match self.entries.iter_mut().find(|(h, _)| h == hash) {
            Some(entry) => entry.1 = entry.1.max(now),
            None => self.entries.push((hash.to_string(), now)),
        }
        // One over, unless a stored list was longer: the least recently seen go.
        while self.entries.len() > MAX_KNOWN {
            let oldest = (0..self.entries.len()).min_by_key(|&i| self.entries[i].1);
            if let Some(i) = oldest {
                self.entries.swap_remove(i);
            }
        }
    }

    pub fn knows(&self, hash: &str, now: UnixMillis) -> bool {
        self.entries
            .iter()
            .any(|(h, at)| h == hash && now - at < KNOWN_FOR_MS)
    }

    pub fn prune(&mut self, now: UnixMillis) {
        self.entries.retain(|(_, at)| now - at < KNOWN_FOR_MS);
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// When nothing here matters any more.
    pub fn idle_after(&self) -> UnixMillis {
        self.entries
            .iter()
            .map(|(_, at)| at + KNOWN_FOR_MS)
            .max()
            .unwrap_or(0)
    }
}

/// What one isolate remembers between requests: the cooldowns it has seen, and which key
/// successes it has already reported. Losing it (a new isolate) costs at most one D1 read
/// per attacker key before the cooldown is learned again, and one more report per key.
#[derive(Debug, Default)]
pub struct IsolateMemory {
    cooldowns: HashMap<String, UnixMillis>,
    reported: HashMap<(String, String), UnixMillis>,
}

impl IsolateMemory {
    /// The address is cooling down until `until`.
    pub fn note_cooldown(&mut self, ip: &str, until: UnixMillis) {
        if self.cooldowns.len() >= MAX_REMEMBERED {
            self.cooldowns.clear();
        }
        let entry = self.cooldowns.entry(ip.to_string()).or_insert(until);
        *entry = (*entry).max(until);
    }

    /// The end of the address's cooldown, while it lasts.
    pub fn cooldown(&self, ip: &str, now: UnixMillis) -> Option<UnixMillis> {
        self.cooldowns.get(ip).copied().filter(|until| *until > now)
    }

    /// Whether this isolate should tell the address's object that `hash` authenticated
    /// from it: the first time, and again once the last report is `REPORT_EVERY_MS` old.
    pub fn should_report(&mut self, ip: &str, hash: &str, now: UnixMillis) -> bool {
        if self.reported.len() >= MAX_REMEMBERED {
            self.reported.clear();
        }
        let key = (ip.to_string(), hash.to_string());
        match self.reported.get(&key) {
            Some(at) if now - at < REPORT_EVERY_MS => false,
            _ => {
                self.reported.insert(key, now);
                true
            }
        }
    }

    /// A report that did not arrive: try again on the next success.
    pub fn forget_report(&mut self, ip: &str, hash: &str) {
        self.reported.remove(&(ip.to_string(), hash.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: UnixMillis = 1_750_000_000_000;

    #[test]
    fn only_anonymous_and_failed_requests_are_charged_to_the_address() {
        assert!(Caller::Anonymous.charged_to_ip());
        assert!(Caller::Failed.charged_to_ip());
        assert!(!Caller::Session.charged_to_ip());
        assert!(!Caller::Key.charged_to_ip());
    }

    #[test]
    fn a_key_is_known_for_ten_minutes_after_it_last_authenticated() {
        let mut known = KnownKeys::default();
        assert!(!known.knows("h1", NOW));
        known.record("h1", NOW);
        assert!(known.knows("h1", NOW + KNOWN_FOR_MS - 1));
        assert!(!known.knows("h1", NOW + KNOWN_FOR_MS));
        assert!(!known.knows("h2", NOW));
        known.record("h1", NOW + 1000);
        assert!(known.knows("h1", NOW + KNOWN_FOR_MS + 999));
        assert_eq!(known.idle_after(), NOW + 1000 + KNOWN_FOR_MS);
        known.prune(NOW + 1000 + KNOWN_FOR_MS);
        assert!(known.is_empty());
    }

    #[test]
    fn an_address_remembers_at_most_max_known_keys_the_latest_first() {
        let mut known = KnownKeys::default();
        for i in 0..(MAX_KNOWN as i64 + 10) {
            known.record(&format!("h{i}"), NOW + i);
        }
        assert_eq!(known.entries.len(), MAX_KNOWN);
        assert!(!known.knows("h0", NOW + 1000));
        assert!(known.knows(&format!("h{}", MAX_KNOWN + 9), NOW + 1000));
    }

    #[test]
    fn an_isolate_remembers_cooldowns_and_reports_each_success_once_in_a_while() {
        let mut memory = IsolateMemory::default();
        assert_eq!(memory.cooldown("1.2.3.4", NOW), None);
        memory.note_cooldown("1.2.3.4", NOW + 10_000);
        memory.note_cooldown("1.2.3.4", NOW + 5_000);
        assert_eq!(memory.cooldown("1.2.3.4", NOW), Some(NOW + 10_000));
        assert_eq!(memory.cooldown("1.2.3.4", NOW + 10_000), None);
        assert_eq!(memory.cooldown("5.6.7.8", NOW), None);

        assert!(memory.should_report("ip", "h", NOW));
        assert!(!memory.should_report("ip", "h", NOW + REPORT_EVERY_MS - 1));
        assert!(memory.should_report("ip", "h", NOW + REPORT_EVERY_MS));
        assert!(memory.should_report("ip", "other", NOW));
        memory.forget_report("ip", "other");
        assert!(memory.should_report("ip", "other", NOW + 1));
    }
}
