//! The rate-limit Durable Object, one instance per limited key (a client IP or a
//! principal), and the worker's client for it. An address's object also keeps the keys that
//! authenticated from it (`core/ipgate.rs`), which a cooldown lets through.
//!
//! The object owns that key's `WindowState` in memory, and decides synchronously, one event
//! at a time, so concurrent requests are counted exactly. It writes the state to storage
//! rarely, not per request: at most once every [`PERSIST_MS`], and from an alarm that
//! flushes what is left. What an eviction can lose is bounded: the requests counted since
//! the last write, at most [`PERSIST_MS`] of them, and only if the flush alarm has not run
//! (it is set for [`PERSIST_MS`] after that write). The window may then admit that many
//! more once; nothing else is lost. The state is stored as one JSON string.

use std::cell::{Cell, RefCell};

use wasm_bindgen::JsValue;
use worker::{durable_object, Date, DurableObject, Env, Request, Response, Result, State};

use super::outbound;
use crate::core::{
    messages::{LimiterMessage as Message, LimiterStored as Stored},
    ratelimit::{Decision, Grant, Policy},
};

/// Versioned: an object holding an older layout starts afresh instead of failing to load.
const STATE_KEY: &str = "window.v3";

/// The longest the stored state lags the state in memory.
pub const PERSIST_MS: i64 = 1000;

/// What a take asks the object for (see [`Message::Take`]); the default is one request,
/// decided now.
#[derive(Default)]
pub struct Ask {
    pub want: u32,
    pub hold_ms: i64,
    pub ahead: bool,
    pub returned: Vec<(i64, u32)>,
    pub fail: bool,
}

/// The binding of the rate-limit objects (wrangler.toml).
const BINDING: &str = "RATE_LIMITER";

/// Asks the object named `key` for a decision on one request: one round trip.
pub async fn check(env: &Env, key: &str, policy: &Policy, fail: bool) -> Result<Decision> {
    let ask = Ask {
        want: 1,
        fail,
        ..Ask::default()
    };
    Ok(take(env, key, policy, ask).await?.decision)
}

/// Asks the object named `key` for up to `ask.want` tokens held for `ask.hold_ms` (a
/// lease), giving back `ask.returned` (tokens of ended leases): one round trip.
pub async fn take(env: &Env, key: &str, policy: &Policy, ask: Ask) -> Result<Grant> {
    let message = Message::Take {
        policy: *policy,
        want: ask.want,
        hold_ms: ask.hold_ms,
        ahead: ask.ahead,
        returned: ask.returned,
        fail: ask.fail,
    };
    let answer = outbound::object_post(BINDING, env, key, &message.to_json()).await?;
    outbound::answer(answer, Grant::from_json).await
}

/// Tells an address's object that a key authenticated from it.
pub async fn record_success(env: &Env, ip_key: &str, hash: &str) -> Result<()> {
    let message = Message::Record { hash: hash.into() };
    outbound::object_post(BINDING, env, ip_key, &message.to_json()).await?;
    Ok(())
}

/// Whether a key authenticated from this address in the last ten minutes.
pub async fn knows(env: &Env, ip_key: &str, hash: &str, fail: bool) -> Result<bool> {
    let message = Message::Knows {
        hash: hash.into(),
        fail,
    };
    let response = outbound::object_post(BINDING, env, ip_key, &message.to_json()).await?;
    outbound::answer(response, serde_json::Value::as_bool).await
}

/// Whether a Durable Object honours the test-only failure hooks: `TEST_HOOKS=1`, and never
/// in production (the worker's config refuses that combination too).
pub fn test_hooks_enabled(env: &Env) -> bool {
    env.var("TEST_HOOKS").is_ok_and(|v| v.to_string() == "1")
        && !env
            .var("ENVIRONMENT")
            .is_ok_and(|v| v.to_string() == "production")
}

// Only `fetch` and `alarm` are exported: the bare attribute would also export the WebSocket
// and `connect` handlers, which it never receives (both objects together: 2.7 KB gzipped).
#[durable_object(alarm)]
pub struct RateLimiter {
    state: State,
    test_hooks: bool,
    /// `None` until loaded from storage. Never borrowed across an `.await`.
    stored: RefCell<Option<Stored>>,
    /// When the alarm is set for, if it is.
    alarm_at: Cell<Option<i64>>,
    /// When the state was last written, and whether memory has changed since.
    persisted_at: Cell<i64>,
    dirty: Cell<bool>,
}

impl DurableObject for RateLimiter {
    fn new(state: State, env: Env) -> Self {
        RateLimiter {
            state,
            test_hooks: test_hooks_enabled(&env),
            stored: RefCell::new(None),
            alarm_at: Cell::new(None),
            persisted_at: Cell::new(0),
            dirty: Cell::new(false),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let message = Message::from_json(&req.bytes().await?)
            .ok_or_else(|| worker::Error::RustError("unreadable limiter message".into()))?;
        if message.fails() && self.test_hooks {
            return Err(worker::Error::RustError("injected limiter failure".into()));
        }
        self.load().await?;
        let now = Date::now().as_millis() as i64;
        let (answer, changed) = {
            let mut slot = self.stored.borrow_mut();
            let stored = slot.get_or_insert_with(Stored::default);
            let before = stored.clone();
            let answer = match &message {
                Message::Take {
                    policy,
                    want,
                    hold_ms,
                    ahead,
                    returned,
                    ..
                } => {
                    stored.window.give_back(returned);
                    let grant = if *ahead {
                        stored.window.take_ahead(policy, now, *want, *hold_ms)
                    } else {
                        stored.window.take(policy, now, *want, *hold_ms)
                    };
                    stored.idle_after = stored.window.idle_after(policy);
                    grant.to_json()
                }
                Message::Record { hash } => {
                    stored.known.record(hash, now);
                    "true".to_string()
                }
                Message::Knows { hash, .. } => stored.known.knows(hash, now).to_string(),
            };
            stored.idle_after = stored.idle_after.max(stored.known.idle_after());
            let changed = *stored != before;
            (answer, changed.then(|| stored.clone()))
        };
        if let Some(snapshot) = changed {
            if now - self.persisted_at.get() >= PERSIST_MS {
                self.persist(&snapshot, now).await?;
                // Cleanup only: correctness never depends on this alarm firing.
                self.alarm_no_later_than(snapshot.idle_after + 1, now)
                    .await?;
            } else {
                // Written by the alarm, or by the first change after PERSIST_MS.
                self.dirty.set(true);
                self.alarm_no_later_than(self.persisted_at.get() + PERSIST_MS, now)
                    .await?;
            }
        }
        outbound::json_reply(answer)
    }

    /// Flushes what memory holds, then deletes the state once nothing in it can matter, or
    /// looks again when it will.
    async fn alarm(&self) -> Result<Response> {
        self.alarm_at.set(None);
        self.load().await?;
        let now = Date::now().as_millis() as i64;
        let snapshot = self.stored.borrow().clone().unwrap_or_default();
        if snapshot.idle_after >= now {
            if self.dirty.get() {
                self.persist(&snapshot, now).await?;
            }
            self.alarm_no_later_than(snapshot.idle_after + 1, now)
                .await?;
        } else {
            self.state.storage().delete_all().await?;
            self.stored.replace(None);
            self.dirty.set(false);
        }
        Response::ok("")
    }
}

impl RateLimiter {
    /// Loads the stored state into memory, once per object lifetime.
    async fn load(&self) -> Result<()> {
        if self.stored.borrow().is_some() {
            return Ok(());
        }
        // get_multiple answers the stored value as it is (get::<T> would read it through
        // serde_wasm_bindgen).
        let stored = self.state.storage().get_multiple(vec![STATE_KEY]).await?;
        let loaded = stored
            .get(&JsValue::from_str(STATE_KEY))
            .as_string()
            .and_then(|t| Stored::from_json(t.as_bytes()))
            .unwrap_or_default();
        let mut slot = self.stored.borrow_mut();
        if slot.is_none() {
            *slot = Some(loaded);
        }
        Ok(())
    }

    async fn persist(&self, snapshot: &Stored, now: i64) -> Result<()> {
        let text = snapshot.to_json();
        self.state
            .storage()
            .put_raw(STATE_KEY, JsValue::from_str(&text))
            .await?;
        self.persisted_at.set(now);
        self.dirty.set(false);
        Ok(())
    }

    /// Makes sure an alarm runs at `at` or earlier.
    async fn alarm_no_later_than(&self, at: i64, now: i64) -> Result<()> {
        if self.alarm_at.get().is_some_and(|set| set <= at) {
            return Ok(());
        }
        self.state.storage().set_alarm((at - now).max(1)).await?;
        self.alarm_at.set(Some(at));
        Ok(())
    }
}
