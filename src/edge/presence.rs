//! Agent presence: one Durable Object per team (`AgentPresence`) keeps each agent's last
//! heartbeat, so a heartbeat costs no D1 write. The object only records and reports
//! times; whether an agent is online is decided by the reader (`core/presence.rs`) at read
//! time, so nothing depends on an alarm.
//!
//! Each agent is one storage key (`a:<agent id>`, a JSON value), so a heartbeat writes a few
//! dozen bytes whatever the team's size. Entries not refreshed for a day are dropped when
//! the object reads them.

use std::{cell::RefCell, collections::HashMap};

use wasm_bindgen::JsValue;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

use super::{limiter::test_hooks_enabled, outbound};
use crate::core::{
    json,
    messages::{seen_list_from_json, seen_list_to_json, PresenceMessage as Message},
    presence::Seen,
    time::UnixMillis,
};

const PREFIX: &str = "a:";
/// An entry this old is of no use to anyone: it is deleted on the next read.
const FORGET_AFTER_MS: i64 = 24 * 60 * 60 * 1000;

/// The binding of the presence objects (wrangler.toml).
const BINDING: &str = "AGENT_PRESENCE";

/// Records a heartbeat: one round trip to the team's object.
pub async fn beat(env: &Env, team_id: &str, seen: Seen, fail: bool) -> Result<()> {
    let message = Message::Beat { seen, fail }.to_json();
    outbound::object_post(BINDING, env, team_id, &message).await?;
    Ok(())
}

/// Every agent's last heartbeat in the team: one round trip.
pub async fn read(env: &Env, team_id: &str, now: UnixMillis, fail: bool) -> Result<Vec<Seen>> {
    let message = Message::Read { now, fail }.to_json();
    let answer = outbound::object_post(BINDING, env, team_id, &message).await?;
    outbound::answer(answer, seen_list_from_json).await
}

// Only `fetch` is exported: this object sets no alarm and takes no WebSocket or `connect`
// (the bare attribute would export those handlers' glue too).
#[durable_object(fetch)]
pub struct AgentPresence {
    state: State,
    test_hooks: bool,
    /// `None` until loaded from storage. Never borrowed across an `.await`.
    seen: RefCell<Option<HashMap<String, Seen>>>,
}

impl AgentPresence {
    async fn load(&self) -> Result<()> {
        if self.seen.borrow().is_some() {
            return Ok(());
        }
        // The object stores nothing but entries, and the whole list is what it loads; a
        // prefix in ListOptions would go through serde_wasm_bindgen.
        let listed = self.state.storage().list().await?;
        let mut loaded = HashMap::new();
        listed.for_each(&mut |value, key| {
            let entry = key.as_string().is_some_and(|k| k.starts_with(PREFIX));
            if let Some(seen) = value
                .as_string()
                .filter(|_| entry)
                .and_then(|text| json::parse(text.as_bytes()))
                .and_then(|v| Seen::from_json(&v))
            {
                loaded.insert(seen.agent_id.clone(), seen);
            }
        });
        let mut slot = self.seen.borrow_mut();
        if slot.is_none() {
            *slot = Some(loaded);
        }
        Ok(())
    }
}

impl DurableObject for AgentPresence {
    fn new(state: State, env: Env) -> Self {
        AgentPresence {
            state,
            test_hooks: test_hooks_enabled(&env),
            seen: RefCell::new(None),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let message = Message::from_json(&req.bytes().await?)
            .ok_or_else(|| worker::Error::RustError("unreadable presence message".into()))?;
        if message.fails() && self.test_hooks {
            return Err(worker::Error::RustError("injected presence failure".into()));
        }
        self.load().await?;
        match message {
            Message::Beat { seen, .. } => {
                let key = format!("{PREFIX}{}", seen.agent_id);
                let text = seen.to_json();
                {
                    let mut slot = self.seen.borrow_mut();
                    let map = slot.get_or_insert_with(HashMap::new);
                    // Heartbeats can arrive out of order; the latest wins.
                    if map
                        .get(&seen.agent_id)
                        .is_some_and(|old| old.last_seen > seen.last_seen)
                    {
                        return outbound::json_reply("null".into());
                    }
                    map.insert(seen.agent_id.clone(), seen);
                }
                self.state
                    .storage()
                    .put_raw(&key, JsValue::from_str(&text))
                    .await?;
                outbound::json_reply("null".into())
            }
            Message::Read { now, .. } => {
                let (current, stale): (Vec<Seen>, Vec<String>) = {
                    let mut slot = self.seen.borrow_mut();
                    let map = slot.get_or_insert_with(HashMap::new);
                    let stale: Vec<String> = map
                        .values()
                        .filter(|s| now - s.last_seen > FORGET_AFTER_MS)
                        .map(|s| s.agent_id.clone())
                        .collect();
                    for id in &stale {
                        map.remove(id);
                    }
                    (map.values().cloned().collect(), stale)
                };
                if !stale.is_empty() {
                    let keys: Vec<String> =
                        stale.iter().map(|id| format!("{PREFIX}{id}")).collect();
                    self.state.storage().delete_multiple(keys).await?;
                }
                outbound::json_reply(seen_list_to_json(&current))
            }
        }
    }
}
