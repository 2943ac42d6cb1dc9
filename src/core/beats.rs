//! Heartbeats this isolate wrote to presence lately, so that an agent beating faster than
//! once a [`COALESCE_MS`] costs one presence write per isolate in that time, not one per
//! heartbeat. The device key is still read from D1 on every heartbeat, so a revoked key is
//! refused at once; only the presence write is skipped.
//!
//! The rule, for one agent in one isolate:
//! - A heartbeat is written when this isolate has written none for the agent in the last
//!   [`COALESCE_MS`], or when its `version` differs from the one written: a new version shows
//!   in the agent list at once.
//! - Only a write the presence object acknowledged counts. Heartbeats that arrive while a
//!   write is still on its way write too, and a failed write is forgotten, so a 200 always
//!   means the object holds a heartbeat of this agent no older than [`COALESCE_MS`].
//! - Writes can be acknowledged out of order. The object keeps the latest heartbeat, and so
//!   does this cache: an older write acknowledged late changes nothing, and two writes of
//!   the same time with different versions leave the cache not knowing which one the
//!   object kept, so it forgets both.
//!
//! What it trades: the object's `last_seen` can be up to [`COALESCE_MS`] older than the
//! agent's latest heartbeat, so an agent beating more often than that and then stopping
//! goes offline up to [`COALESCE_MS`] sooner than `AGENT_TTL_SECS` after its last beat.
//! Agents that keep to `next_heartbeat_in` (15 s) are never coalesced.

use crate::core::{presence::Seen, time::UnixMillis, ttl_cache::TtlCache};

pub const COALESCE_MS: i64 = 1_000;
pub const CACHE_ENTRIES: usize = 4_096;

/// By team and agent id: the version and time of the latest heartbeat written, until
/// [`COALESCE_MS`] after it.
#[derive(Debug)]
pub struct BeatCache(TtlCache<(String, String), (Option<String>, UnixMillis)>);

impl Default for BeatCache {
    fn default() -> Self {
        BeatCache(TtlCache::new(CACHE_ENTRIES))
    }
}

impl BeatCache {
    /// Whether `seen` is already in the team's presence object, as far as this isolate
    /// knows: written no more than [`COALESCE_MS`] before `now`, with the same version.
    pub fn recorded(&mut self, team_id: &str, seen: &Seen, now: UnixMillis) -> bool {
        let key = (team_id.to_owned(), seen.agent_id.clone());
        self.0
            .get_mut(&key, now)
            .is_some_and(|(version, _)| *version == seen.version)
    }

    /// The presence object acknowledged `seen`, written at `seen.last_seen`.
    pub fn written(&mut self, team_id: &str, seen: &Seen, now: UnixMillis) {
        let key = (team_id.to_owned(), seen.agent_id.clone());
        match self.0.get_mut(&key, now) {
            Some((_, at)) if *at > seen.last_seen => {}
            Some((version, at)) if *at == seen.last_seen && *version != seen.version => {
                self.0.remove(&key);
            }
            _ => {
                let until = seen.last_seen + COALESCE_MS;
                self.0
                    .insert(key, (seen.version.clone(), seen.last_seen), until, now);
            }
        }
    }

    /// The write of a heartbeat failed: the next one writes.
    pub fn forget(&mut self, team_id: &str, agent_id: &str) {
        self.0.remove(&(team_id.to_owned(), agent_id.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(agent: &str, at: UnixMillis, version: Option<&str>) -> Seen {
        Seen {
            agent_id: agent.into(),
            last_seen: at,
            version: version.map(Into::into),
        }
    }

    #[test]
    fn a_beat_within_the_window_with_the_same_version_is_not_written_again() {
        let mut cache = BeatCache::default();
        let first = seen("a", 10_000, Some("1.0"));
        assert!(!cache.recorded("t", &first, 10_000), "nothing written yet");
        cache.written("t", &first, 10_005);
        assert!(cache.recorded("t", &seen("a", 10_500, Some("1.0")), 10_500));
        assert!(cache.recorded("t", &seen("a", 10_999, Some("1.0")), 10_999));
        // The window is measured from the written heartbeat's time.
        assert!(!cache.recorded("t", &seen("a", 11_000, Some("1.0")), 11_000));
    }

    #[test]
    fn a_new_version_another_agent_or_another_team_is_written() {
        let mut cache = BeatCache::default();
        cache.written("t", &seen("a", 0, Some("1.0")), 0);
        assert!(!cache.recorded("t", &seen("a", 10, Some("1.1")), 10));
        assert!(!cache.recorded("t", &seen("a", 10, None), 10));
        assert!(!cache.recorded("t", &seen("b", 10, Some("1.0")), 10));
        assert!(!cache.recorded("u", &seen("a", 10, Some("1.0")), 10));
        // No version is a version like any other.
        cache.written("t", &seen("c", 0, None), 0);
        assert!(cache.recorded("t", &seen("c", 10, None), 10));
        assert!(!cache.recorded("t", &seen("c", 10, Some("1.0")), 10));
    }

    #[test]
    fn a_failed_write_is_forgotten_and_a_later_write_restarts_the_window() {
        let mut cache = BeatCache::default();
        cache.written("t", &seen("a", 0, None), 0);
        cache.forget("t", "a");
        assert!(!cache.recorded("t", &seen("a", 10, None), 10));
        cache.written("t", &seen("a", 900, None), 900);
        assert!(cache.recorded("t", &seen("a", 1_800, None), 1_800));
    }

    #[test]
    fn an_older_write_acknowledged_late_leaves_the_latest_in_place() {
        let mut cache = BeatCache::default();
        cache.written("t", &seen("a", 500, Some("1.1")), 600);
        // The object kept 1.1 (the later heartbeat), and so does the cache.
        cache.written("t", &seen("a", 400, Some("1.0")), 610);
        assert!(cache.recorded("t", &seen("a", 700, Some("1.1")), 700));
        assert!(!cache.recorded("t", &seen("a", 700, Some("1.0")), 700));
        // The same time, another version: which one the object kept is unknown.
        cache.written("t", &seen("a", 500, Some("1.2")), 620);
        assert!(!cache.recorded("t", &seen("a", 700, Some("1.1")), 700));
        assert!(!cache.recorded("t", &seen("a", 700, Some("1.2")), 700));
        // The same time and version again is the same heartbeat.
        cache.written("t", &seen("b", 500, None), 600);
        cache.written("t", &seen("b", 500, None), 610);
        assert!(cache.recorded("t", &seen("b", 700, None), 700));
    }

    /// The promise behind a 200, over a long run of beats at random times, versions and
    /// failures: whenever a beat is answered without a write, the object holds a heartbeat
    /// of the agent, with its version, no older than the window.
    #[test]
    fn a_skipped_beat_always_has_a_fresh_enough_write_behind_it() {
        let mut cache = BeatCache::default();
        let mut object: Option<Seen> = None;
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut now = 0;
        let (mut writes, mut skips) = (0, 0);
        for _ in 0..20_000 {
            now += (next() % 400) as i64;
            let version = ["1.0", "1.1"][(next() % 8 == 0) as usize];
            let beat = seen("a", now, Some(version));
            if cache.recorded("t", &beat, now) {
                skips += 1;
                let held = object.as_ref().expect("a write is behind every skip");
                assert_eq!(held.version, beat.version);
                assert!(now - held.last_seen < COALESCE_MS);
            } else if next() % 10 == 0 {
                cache.forget("t", "a");
            } else {
                writes += 1;
                object = Some(beat.clone());
                cache.written("t", &beat, now);
            }
        }
        assert!(
            writes > 1_000 && skips > 1_000,
            "{writes} writes, {skips} skips"
        );
    }
}
