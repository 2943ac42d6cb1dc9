//! Callers this isolate authenticated from D1 lately, by their principal key (an API key's
//! hash, or a JWT's user and the team it names), so that a credential PUT can go straight
//! to its one guarded write: one D1 round trip instead of a read and then the write.
//!
//! What is remembered never widens what a caller may do:
//! - An API key's team, kind and scopes never change. Its revocation does, so the write
//!   re-checks it in its own statements (`WriteGuard`): a key revoked meanwhile writes
//!   nothing and gets 401, in every isolate, on the very next request.
//! - A member's role can change. The write re-checks that the user is still an owner or
//!   admin. A remembered role is only ever used to go ahead: a remembered role that may
//!   not write sends the caller down the reading path, so a promotion counts at once.
//! - What the remembered entry lets through before the write is the provider check of the
//!   key in the request body: for at most [`CACHE_MS`] after a revocation, the isolate
//!   that remembered a caller may still ask the provider about the key that caller sends,
//!   and then stores nothing.
//!
//! An entry lasts [`CACHE_MS`], or until the key expires if that is sooner; a refused write
//! forgets it. At most [`CACHE_ENTRIES`] are kept; the least recently used goes first.

use crate::core::{
    access::Actor, api_keys::LAST_USED_RESOLUTION_MS, time::UnixMillis, ttl_cache::TtlCache,
};

pub const CACHE_MS: i64 = 60_000;
pub const CACHE_ENTRIES: usize = 1_000;

#[derive(Debug, Clone)]
struct Known {
    actor: Actor,
    /// An API key's `last_used_at` as last read or written; `None` for a user.
    last_used_at: Option<UnixMillis>,
}

/// A remembered caller who may go ahead, and whether its key's `last_used_at` is due to be
/// written (as a read caller's would be).
#[derive(Debug, Clone, PartialEq)]
pub struct KnownWriter {
    pub actor: Actor,
    pub touch: bool,
}

#[derive(Debug)]
pub struct WriterCache(TtlCache<String, Known>);

impl Default for WriterCache {
    fn default() -> Self {
        WriterCache(TtlCache::new(CACHE_ENTRIES))
    }
}

impl WriterCache {
    /// Remembers a caller D1 has just vouched for. `key` is an API key's `(expires_at,
    /// last_used_at)`; an actor with no team is not remembered.
    pub fn remember(
        &mut self,
        principal: String,
        actor: Actor,
        key: Option<(Option<UnixMillis>, Option<UnixMillis>)>,
        now: UnixMillis,
    ) {
        if actor.team_id().is_none() {
            return;
        }
        let (expires_at, last_used_at) = key.unwrap_or_default();
        let until = expires_at.map_or(now + CACHE_MS, |at| at.min(now + CACHE_MS));
        self.0.insert(
            principal,
            Known {
                actor,
                last_used_at,
            },
            until,
            now,
        );
    }

    /// The remembered caller, if `may` lets it go ahead. A key's `last_used_at` counts as
    /// written once this says `touch`.
    pub fn writer(
        &mut self,
        principal: &str,
        now: UnixMillis,
        may: impl Fn(&Actor) -> bool,
    ) -> Option<KnownWriter> {
        let known = self.0.get_mut(&principal.to_string(), now)?;
        if !may(&known.actor) {
            return None;
        }
        let touch = matches!(known.actor, Actor::Key { .. })
            && known
                .last_used_at
                .is_none_or(|at| now - at >= LAST_USED_RESOLUTION_MS);
        if touch {
            known.last_used_at = Some(now);
        }
        Some(KnownWriter {
            actor: known.actor.clone(),
            touch,
        })
    }

    /// The team of a caller remembered here, for a read that may start before D1 has
    /// answered for the caller (the route decision's presence read). Its result may only be
    /// used once D1 has vouched for the caller in that very team: this lets nothing through.
    pub fn team_of(&mut self, principal: &str, now: UnixMillis) -> Option<String> {
        let known = self.0.get_mut(&principal.to_string(), now)?;
        known.actor.team_id().map(str::to_string)
    }

    /// After a refused write: the next request reads D1 again.
    pub fn forget(&mut self, principal: &str) {
        self.0.remove(&principal.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{
        access::{Role, Scope},
        auth::api_key::KeyKind,
    };

    const NOW: UnixMillis = 1_800_000_000_000;

    fn admin() -> Actor {
        Actor::User {
            user_id: "alice".into(),
            team: Some(("team-1".into(), Role::Admin)),
        }
    }

    fn integration() -> Actor {
        Actor::Key {
            key_id: "key-1".into(),
            team_id: "team-1".into(),
            kind: KeyKind::Secret,
            scopes: vec![Scope::CloudProvidersWrite],
        }
    }

    fn may_write(actor: &Actor) -> bool {
        actor.may_write_credentials().is_ok()
    }

    #[test]
    fn a_caller_is_remembered_for_a_minute_or_until_its_key_expires() {
        let mut cache = WriterCache::default();
        cache.remember("user:alice".into(), admin(), None, NOW);
        cache.remember(
            "key:short".into(),
            integration(),
            Some((Some(NOW + 10_000), Some(NOW))),
            NOW,
        );
        assert_eq!(
            cache
                .writer("user:alice", NOW + 59_999, may_write)
                .map(|w| w.actor),
            Some(admin())
        );
        assert!(cache
            .writer("user:alice", NOW + 60_000, may_write)
            .is_none());
        assert!(cache.writer("key:short", NOW + 9_999, may_write).is_some());
        assert!(cache.writer("key:short", NOW + 10_000, may_write).is_none());
        // No team, nothing to remember.
        cache.remember(
            "user:bob".into(),
            Actor::User {
                user_id: "bob".into(),
                team: None,
            },
            None,
            NOW,
        );
        assert!(cache.writer("user:bob", NOW, |_| true).is_none());
    }

    #[test]
    fn a_remembered_role_only_ever_lets_a_caller_go_ahead() {
        let mut cache = WriterCache::default();
        let member = Actor::User {
            user_id: "carol".into(),
            team: Some(("team-1".into(), Role::Member)),
        };
        cache.remember("user:carol".into(), member, None, NOW);
        // A member may not write: no answer, so the caller's role is read again (a
        // promotion counts at once), never a refusal from memory.
        assert!(cache.writer("user:carol", NOW, may_write).is_none());
        cache.remember("user:alice".into(), admin(), None, NOW);
        cache.forget("user:alice");
        assert!(cache.writer("user:alice", NOW, may_write).is_none());
    }

    #[test]
    fn a_keys_last_use_is_due_once_per_resolution() {
        let mut cache = WriterCache::default();
        cache.remember(
            "key:k".into(),
            integration(),
            Some((None, Some(NOW - LAST_USED_RESOLUTION_MS + 1))),
            NOW,
        );
        assert!(!cache.writer("key:k", NOW, may_write).unwrap().touch);
        assert!(cache.writer("key:k", NOW + 1, may_write).unwrap().touch);
        assert!(!cache.writer("key:k", NOW + 2, may_write).unwrap().touch);
        cache.remember("user:alice".into(), admin(), None, NOW);
        assert!(!cache.writer("user:alice", NOW, may_write).unwrap().touch);
    }

    #[test]
    fn a_remembered_team_is_any_callers_own_and_lasts_as_long_as_the_caller() {
        let mut cache = WriterCache::default();
        cache.remember("user:alice".into(), admin(), None, NOW);
        cache.remember("key:k".into(), integration(), Some((None, Some(NOW))), NOW);
        // Whatever the caller may do: a member, or a key that may not write, has its team.
        let member = Actor::User {
            user_id: "carol".into(),
            team: Some(("team-2".into(), Role::Member)),
        };
        cache.remember("user:carol".into(), member, None, NOW);
        assert_eq!(cache.team_of("user:alice", NOW).as_deref(), Some("team-1"));
        assert_eq!(
            cache.team_of("key:k", NOW + 59_999).as_deref(),
            Some("team-1")
        );
        assert_eq!(cache.team_of("user:carol", NOW).as_deref(), Some("team-2"));
        assert_eq!(cache.team_of("key:k", NOW + 60_000), None);
        assert_eq!(cache.team_of("user:nobody", NOW), None);
        cache.forget("user:alice");
        assert_eq!(cache.team_of("user:alice", NOW), None);
    }
}
