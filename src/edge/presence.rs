//! Agent presence: one Durable Object per team (`AgentPresence`) keeps each agent's last
//! heartbeat, so a heartbeat costs no D1 write. The object only records and reports
//! times; whether an agent is online is decided by the reader (`core/presence.rs`) at read
//! time, so nothing depends on an alarm.
//!
//! Each agent is one storage key (`a:<agent id>`, a JSON value), so a heartbeat writes a few
//! dozen bytes whatever the team's size. Entries not refreshed for a day are dropped when
//! the object reads them.

use std::{cell::RefCell, collections::BTreeMap};

use serde::{Deserialize, Serialize};
use wasm_bindgen::JsValue;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

use super::{limiter::test_hooks_enabled, outbound};
use crate::core::{presence::Seen, time::UnixMillis};

const PREFIX: &str = "a:";
/// An entry this old is of no use to anyone: it is deleted on the next read.
const FORGET_AFTER_MS: i64 = 24 * 60 * 60 * 1000;

/// Written `{"op": "beat", …}`; read through [`Wire`] (see `core::ratelimit::Decision` for
/// why not serde's internally tagged derive).
#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", try_from = "Wire")]
enum Message {
    Beat {
        seen: Seen,
        #[serde(default)]
        fail: bool,
    },
    Read {
        now: UnixMillis,
        #[serde(default)]
        fail: bool,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Op {
    Beat,
    Read,
}

/// A [`Message`] as it is written: the tag beside every field either variant has.
#[derive(Deserialize)]
struct Wire {
    op: Op,
    seen: Option<Seen>,
    now: Option<UnixMillis>,
    #[serde(default)]
    fail: bool,
}

impl TryFrom<Wire> for Message {
    type Error = &'static str;

    fn try_from(w: Wire) -> std::result::Result<Self, Self::Error> {
        Ok(match w.op {
            Op::Beat => Message::Beat {
                seen: w.seen.ok_or("missing field `seen`")?,
                fail: w.fail,
            },
            Op::Read => Message::Read {
                now: w.now.ok_or("missing field `now`")?,
                fail: w.fail,
            },
        })
    }
}

/// The binding of the presence objects (wrangler.toml).
const BINDING: &str = "AGENT_PRESENCE";

/// Records a heartbeat: one round trip to the team's object.
pub async fn beat(env: &Env, team_id: &str, seen: Seen, fail: bool) -> Result<()> {
    outbound::object_post(BINDING, env, team_id, &Message::Beat { seen, fail }).await?;
    Ok(())
}

/// Every agent's last heartbeat in the team: one round trip.
pub async fn read(env: &Env, team_id: &str, now: UnixMillis, fail: bool) -> Result<Vec<Seen>> {
    outbound::json_answer(
        outbound::object_post(BINDING, env, team_id, &Message::Read { now, fail }).await?,
    )
    .await
}

// Only `fetch` is exported: this object sets no alarm and takes no WebSocket or `connect`
// (the bare attribute would export those handlers' glue too).
#[durable_object(fetch)]
pub struct AgentPresence {
    state: State,
    test_hooks: bool,
    /// `None` until loaded from storage. Never borrowed across an `.await`.
    seen: RefCell<Option<BTreeMap<String, Seen>>>,
}

impl AgentPresence {
    async fn load(&self) -> Result<()> {
        if self.seen.borrow().is_some() {
            return Ok(());
        }
        // The object stores nothing but entries, and the whole list is what it loads; a
        // prefix in ListOptions would go through serde_wasm_bindgen.
        let listed = self.state.storage().list().await?;
        let mut loaded = BTreeMap::new();
        listed.for_each(&mut |value, key| {
            let entry = key.as_string().is_some_and(|k| k.starts_with(PREFIX));
            if let Some(seen) = value
                .as_string()
                .filter(|_| entry)
                .and_then(|text| serde_json::from_slice::<Seen>(text.as_bytes()).ok())
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
        let message: Message = serde_json::from_slice(&req.bytes().await?)?;
        let fail = match &message {
            Message::Beat { fail, .. } | Message::Read { fail, .. } => *fail,
        };
        if fail && self.test_hooks {
            return Err(worker::Error::RustError("injected presence failure".into()));
        }
        self.load().await?;
        match message {
            Message::Beat { seen, .. } => {
                let key = format!("{PREFIX}{}", seen.agent_id);
                let text = serde_json::to_string(&seen)?;
                {
                    let mut slot = self.seen.borrow_mut();
                    let map = slot.get_or_insert_with(BTreeMap::new);
                    // Heartbeats can arrive out of order; the latest wins.
                    if map
                        .get(&seen.agent_id)
                        .is_some_and(|old| old.last_seen > seen.last_seen)
                    {
                        return Response::from_json(&());
                    }
                    map.insert(seen.agent_id.clone(), seen);
                }
                self.state
                    .storage()
                    .put_raw(&key, JsValue::from_str(&text))
                    .await?;
                Response::from_json(&())
            }
            Message::Read { now, .. } => {
                let (current, stale): (Vec<Seen>, Vec<String>) = {
                    let mut slot = self.seen.borrow_mut();
                    let map = slot.get_or_insert_with(BTreeMap::new);
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
                Response::from_json(&current)
            }
        }
    }
}
