//! Callers for the tests: dev-secret session JWTs, and teams and keys made through the API.

use super::{Call, Worker, ROOT};
use jwt_compact::{alg::Hs256, alg::Hs256Key, AlgorithmExt, Claims, Header};
use serde_json::{json, Value};
use std::sync::{
    atomic::{AtomicUsize, Ordering},
    OnceLock,
};

/// A secret as the worker sees it: from .dev.vars, which setup creates.
pub fn dev_var(name: &str) -> String {
    let vars = std::fs::read_to_string(format!("{ROOT}/.dev.vars"))
        .expect(".dev.vars (scripts/setup.sh creates it)");
    vars.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .map(|v| v.trim().trim_matches('"').trim_matches('\'').to_string())
        .unwrap_or_else(|| panic!("{name} in .dev.vars"))
}

pub fn dev_secret() -> &'static str {
    static SECRET: OnceLock<String> = OnceLock::new();
    SECRET.get_or_init(|| dev_var("JWT_SECRET"))
}

pub fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A user id no other test uses.
pub fn unique_user(label: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{label}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// An HS256 session token with the dev secret, valid for an hour.
pub fn token(sub: &str) -> String {
    token_with(&json!({"sub": sub, "exp": now_s() + 3600, "iat": now_s()}))
}

pub fn token_with(claims: &Value) -> String {
    let claims: Claims<Value> = Claims::new(claims.clone());
    Hs256
        .token(
            &Header::empty(),
            &claims,
            &Hs256Key::new(dev_secret().as_bytes()),
        )
        .unwrap()
}

/// Creates a team owned by `owner` and returns its id.
pub fn new_team(w: &Worker, owner: &str) -> String {
    let r = Call::post(w, "/api/v1/teams")
        .bearer(&token(owner))
        .json(&json!({"name": format!("team of {owner}")}))
        .send();
    assert_eq!(r.status, 201, "{}", r.text);
    r.json()["id"].as_str().unwrap().to_string()
}

/// Creates an API key in `team` as `owner`; returns the creation response.
pub fn new_key(w: &Worker, owner: &str, team: &str, body: Value) -> Value {
    let r = Call::post(w, "/api/v1/api-keys")
        .bearer(&token(owner))
        .header("X-Team-ID", team)
        .json(&body)
        .send();
    assert_eq!(r.status, 201, "{}", r.text);
    r.json()
}

/// Adds `user` to `team` with `role`, as `by`.
pub fn add_member(w: &Worker, by: &str, team: &str, user: &str, role: &str) {
    let r = Call::put(w, &format!("/api/v1/team/members/{user}"))
        .bearer(&token(by))
        .header("X-Team-ID", team)
        .json(&json!({ "role": role }))
        .send();
    assert_eq!(r.status, 200, "{}", r.text);
}
