//! Verified session JWTs, remembered per isolate so a busy caller's token is verified once,
//! not on every request. Only verification is cached: membership is still read from D1 on
//! every request, so removing a member takes effect at once.
//!
//! An entry is keyed by the SHA-256 of the whole token (a different token, even one
//! differing in its signature only, is a different entry), and is kept until the token's
//! `exp` or for [`CACHE_MS`], whichever comes first. At most [`CACHE_ENTRIES`] are kept; the
//! least recently used goes first.

use sha2::{Digest, Sha256};

#[cfg(not(target_arch = "wasm32"))]
use super::jwt::JwtError;
use super::jwt::Session;
use crate::core::{time::UnixMillis, ttl_cache::TtlCache};

/// The longest a verified token is remembered.
pub const CACHE_MS: i64 = 60_000;
/// The most tokens remembered.
pub const CACHE_ENTRIES: usize = 1_000;

fn key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[derive(Debug)]
pub struct SessionCache(TtlCache<[u8; 32], Session>);

impl Default for SessionCache {
    fn default() -> Self {
        SessionCache(TtlCache::new(CACHE_ENTRIES))
    }
}

impl SessionCache {
    /// The session of `token` while its entry lasts.
    pub fn get(&mut self, token: &str, now: UnixMillis) -> Option<Session> {
        self.0.get_mut(&key(token), now).cloned()
    }

    /// Remembers a token verified now, whose `exp` is `exp`. Only successes are remembered.
    pub fn remember(&mut self, token: &str, session: Session, exp: UnixMillis, now: UnixMillis) {
        self.0
            .insert(key(token), session, exp.min(now + CACHE_MS), now);
    }

    /// The session of `token`: from the cache while its entry lasts, otherwise verified by
    /// `verifier` and remembered if valid. Failures are never cached.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn verify(
        &mut self,
        verifier: &super::jwt::JwtVerifier,
        token: &str,
        now: UnixMillis,
    ) -> Result<Session, JwtError> {
        if let Some(session) = self.get(token, now) {
            return Ok(session);
        }
        let (session, exp) = verifier.verify_until(token, now)?;
        self.remember(token, session.clone(), exp, now);
        Ok(session)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::auth::jwt::{JwtError, JwtVerifier};
    use hmac_token::*;

    /// HS256 tokens for a 32-byte test secret, made with jwt-compact.
    mod hmac_token {
        use jwt_compact::{alg::Hs256, alg::Hs256Key, AlgorithmExt, Claims, Header};
        pub const SECRET: &str = "session-cache-test-secret-32-bytes!!";
        pub fn token(sub: &str, exp_s: i64) -> String {
            let mut claims = Claims::new(serde_json::json!({ "sub": sub }));
            claims.expiration = chrono::DateTime::from_timestamp(exp_s, 0);
            Hs256
                .token(&Header::empty(), &claims, &Hs256Key::new(SECRET.as_bytes()))
                .unwrap()
        }
    }

    fn verifier() -> JwtVerifier {
        JwtVerifier::new(crate::core::auth::jwt::JwtSettings {
            secret: Some(SECRET),
            jwks: None,
            issuer: None,
            audience: None,
        })
        .unwrap()
    }

    const NOW: UnixMillis = 1_800_000_000_000;

    #[test]
    fn a_token_is_verified_once_then_remembered_until_exp_or_a_minute() {
        let v = verifier();
        let mut cache = SessionCache::default();
        let long = token("alice", NOW / 1000 + 3600);
        assert_eq!(cache.verify(&v, &long, NOW).unwrap().user_id, "alice");
        assert_eq!(cache.len(), 1);
        // A verifier that accepts nothing: the hit never asks it.
        let none = JwtVerifier::new(crate::core::auth::jwt::JwtSettings {
            secret: Some("another-secret-of-at-least-32-bytes!!"),
            jwks: None,
            issuer: None,
            audience: None,
        })
        .unwrap();
        assert!(cache.verify(&none, &long, NOW + 59_999).is_ok());
        // After a minute the entry is gone, and verification is asked again.
        assert_eq!(
            cache.verify(&none, &long, NOW + 60_000),
            Err(JwtError::Invalid)
        );
        // A token expiring sooner is remembered only until its exp.
        let short = token("bob", NOW / 1000 + 10);
        assert!(cache.verify(&v, &short, NOW).is_ok());
        assert!(cache.verify(&none, &short, NOW + 9_999).is_ok());
        assert!(cache.verify(&none, &short, NOW + 10_000).is_err());
    }

    #[test]
    fn failures_are_not_cached_and_a_changed_signature_is_another_token() {
        let v = verifier();
        let mut cache = SessionCache::default();
        let good = token("carol", NOW / 1000 + 3600);
        let mut forged = good.clone();
        forged.pop();
        forged.push(if good.ends_with('A') { 'B' } else { 'A' });
        assert!(cache.verify(&v, &forged, NOW).is_err());
        assert!(cache.is_empty());
        assert!(cache.verify(&v, &good, NOW).is_ok());
        assert!(cache.verify(&v, &forged, NOW).is_err());
        let expired = token("dave", NOW / 1000 - 3600);
        assert_eq!(cache.verify(&v, &expired, NOW), Err(JwtError::Expired));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn the_cache_is_bounded_and_drops_the_least_recently_used() {
        let v = verifier();
        let mut cache = SessionCache::default();
        let first = token("user-0", NOW / 1000 + 3600);
        assert!(cache.verify(&v, &first, NOW).is_ok());
        for i in 1..CACHE_ENTRIES + 10 {
            // Keep the first one in use.
            assert!(cache.verify(&v, &first, NOW).is_ok());
            assert!(cache
                .verify(&v, &token(&format!("user-{i}"), NOW / 1000 + 3600), NOW)
                .is_ok());
        }
        assert_eq!(cache.len(), CACHE_ENTRIES);
        // The one in constant use stayed; the oldest unused went.
        assert!(cache.0.values().any(|s| s.user_id == "user-0"));
        assert!(!cache.0.values().any(|s| s.user_id == "user-1"));
    }
}
