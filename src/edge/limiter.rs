//! The rate-limit Durable Object: one instance per limited key (a client IP or a principal).
//! It owns that key's `WindowState`, keeps it in memory while the object lives, and in
//! storage so eviction loses nothing. Each call costs one round trip.

use crate::core::ratelimit::{Decision, Policy, WindowState};
use std::cell::RefCell;
use worker::{durable_object, Date, DurableObject, Env, Request, Response, Result, State};

const STATE_KEY: &str = "window";

#[durable_object]
pub struct RateLimiter {
    state: State,
    /// `None` until loaded from storage. Never borrowed across an `.await`.
    window: RefCell<Option<WindowState>>,
}

impl DurableObject for RateLimiter {
    fn new(state: State, _env: Env) -> Self {
        RateLimiter {
            state,
            window: RefCell::new(None),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let policy: Policy = req.json().await?;
        if self.window.borrow().is_none() {
            let stored = self.state.storage().get::<WindowState>(STATE_KEY).await?;
            let mut slot = self.window.borrow_mut();
            if slot.is_none() {
                *slot = Some(stored.unwrap_or_default());
            }
        }
        let now = Date::now().as_millis() as i64;
        let (decision, changed, snapshot) = {
            let mut slot = self.window.borrow_mut();
            let window = slot.get_or_insert_with(WindowState::default);
            let before = window.clone();
            let decision = window.decide(&policy, now);
            (decision, *window != before, window.clone())
        };
        if changed {
            let storage = self.state.storage();
            storage.put(STATE_KEY, &snapshot).await?;
            // Cleanup only: correctness never depends on this alarm firing.
            storage
                .set_alarm(snapshot.idle_after(&policy) - now + 1)
                .await?;
        }
        Response::from_json::<Decision>(&decision)
    }

    async fn alarm(&self) -> Result<Response> {
        self.state.storage().delete_all().await?;
        self.window.replace(None);
        Response::ok("cleared")
    }
}
