//! What an isolate and its Durable Objects say to each other, and what the rate-limit
//! object stores, as JSON written and read by hand (`core/json.rs`). The texts are the
//! ones serde's derives wrote before, so an object's stored state and a message from an
//! isolate of the previous version still read.

use serde_json::Value;

use super::{
    ipgate::KnownKeys,
    json::{self, Obj},
    presence::Seen,
    ratelimit::{Policy, WindowState},
    time::UnixMillis,
};

/// To a rate-limit object: `{"op": "take" | "record" | "knows", …}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimiterMessage {
    /// Grant up to `want` requests: the first counted now, the rest held for `hold_ms` (a
    /// lease, `core/lease.rs`); one request with no hold is a plain decision.
    Take {
        policy: Policy,
        want: u32,
        hold_ms: i64,
        /// A refill ahead of need: no request spends the first token now either.
        ahead: bool,
        /// Tokens of this isolate's earlier leases that ended unspent, `(bucket, n)`, given
        /// back before deciding (`WindowState::give_back`).
        returned: Vec<(i64, u32)>,
        /// Test hook: throw instead of deciding (honoured only with TEST_HOOKS=1).
        fail: bool,
    },
    /// The key with this hash authenticated from this address.
    Record { hash: String },
    /// Whether the key with this hash authenticated from this address lately.
    Knows { hash: String, fail: bool },
}

impl LimiterMessage {
    pub fn to_json(&self) -> String {
        match self {
            LimiterMessage::Take {
                policy,
                want,
                hold_ms,
                ahead,
                returned,
                fail,
            } => {
                let mut o = Obj::new()
                    .str("op", "take")
                    .raw("policy", &policy.to_json())
                    .int("want", (*want).into())
                    .int("hold_ms", *hold_ms)
                    .bool("ahead", *ahead);
                if !returned.is_empty() {
                    let list =
                        json::array(returned, |o, (at, n)| o.push_str(&format!("[{at},{n}]")));
                    o = o.raw("returned", &list);
                }
                o.bool("fail", *fail)
            }
            LimiterMessage::Record { hash } => Obj::new().str("op", "record").str("hash", hash),
            LimiterMessage::Knows { hash, fail } => Obj::new()
                .str("op", "knows")
                .str("hash", hash)
                .bool("fail", *fail),
        }
        .done()
    }

    pub fn from_json(text: &[u8]) -> Option<LimiterMessage> {
        let v = json::parse(text)?;
        Some(match v.get("op")?.as_str()? {
            "take" => LimiterMessage::Take {
                policy: Policy::from_json(v.get("policy")?)?,
                want: json::uint(&v, "want")?,
                hold_ms: json::int(&v, "hold_ms")?,
                ahead: json::flag(&v, "ahead")?,
                returned: json::pairs(&v, "returned", Value::as_i64, json::as_u32)?,
                fail: json::flag(&v, "fail")?,
            },
            "record" => LimiterMessage::Record {
                hash: json::string(&v, "hash")?,
            },
            "knows" => LimiterMessage::Knows {
                hash: json::string(&v, "hash")?,
                fail: json::flag(&v, "fail")?,
            },
            _ => return None,
        })
    }

    /// Whether the test hook asks the object to fail.
    pub fn fails(&self) -> bool {
        matches!(
            self,
            LimiterMessage::Take { fail: true, .. } | LimiterMessage::Knows { fail: true, .. }
        )
    }
}

/// What a rate-limit object keeps in storage: the window, and when it stops mattering (for
/// cleanup; the alarm does not know the policy).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimiterStored {
    pub window: WindowState,
    pub idle_after: i64,
    /// An address's keys that authenticated from it (empty for a principal's object).
    pub known: KnownKeys,
}

impl LimiterStored {
    pub fn to_json(&self) -> String {
        Obj::new()
            .raw("window", &self.window.to_json())
            .int("idle_after", self.idle_after)
            .raw("known", &self.known.to_json())
            .done()
    }

    /// `None` for anything but a state this or the previous version wrote.
    pub fn from_json(text: &[u8]) -> Option<LimiterStored> {
        let v = json::parse(text)?;
        Some(LimiterStored {
            window: WindowState::from_json(v.get("window")?)?,
            idle_after: json::int(&v, "idle_after")?,
            known: match v.get("known") {
                None => KnownKeys::default(),
                Some(k) => KnownKeys::from_json(k)?,
            },
        })
    }
}

/// To a team's presence object: `{"op": "beat" | "read", …}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PresenceMessage {
    Beat { seen: Seen, fail: bool },
    Read { now: UnixMillis, fail: bool },
}

impl PresenceMessage {
    pub fn to_json(&self) -> String {
        match self {
            PresenceMessage::Beat { seen, fail } => Obj::new()
                .str("op", "beat")
                .raw("seen", &seen.to_json())
                .bool("fail", *fail),
            PresenceMessage::Read { now, fail } => Obj::new()
                .str("op", "read")
                .int("now", *now)
                .bool("fail", *fail),
        }
        .done()
    }

    pub fn from_json(text: &[u8]) -> Option<PresenceMessage> {
        let v = json::parse(text)?;
        Some(match v.get("op")?.as_str()? {
            "beat" => PresenceMessage::Beat {
                seen: Seen::from_json(v.get("seen")?)?,
                fail: json::flag(&v, "fail")?,
            },
            "read" => PresenceMessage::Read {
                now: json::int(&v, "now")?,
                fail: json::flag(&v, "fail")?,
            },
            _ => return None,
        })
    }

    /// Whether the test hook asks the object to fail.
    pub fn fails(&self) -> bool {
        match self {
            PresenceMessage::Beat { fail, .. } | PresenceMessage::Read { fail, .. } => *fail,
        }
    }
}

/// A presence object's answer to a read: every agent's last heartbeat.
pub fn seen_list_to_json(seen: &[Seen]) -> String {
    json::array(seen, |o, s| o.push_str(&s.to_json()))
}

pub fn seen_list_from_json(v: &Value) -> Option<Vec<Seen>> {
    v.as_array()?.iter().map(Seen::from_json).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ratelimit::Decision;

    const POLICY: Policy = Policy {
        limit: 600,
        window_ms: 60_000,
        cooldown_ms: 0,
    };

    #[test]
    fn limiter_messages_read_back_what_they_wrote() {
        for m in [
            LimiterMessage::Take {
                policy: POLICY,
                want: 4,
                hold_ms: 250,
                ahead: true,
                returned: vec![(17, 2), (18, 1)],
                fail: false,
            },
            LimiterMessage::Take {
                policy: POLICY,
                want: 1,
                hold_ms: 0,
                ahead: false,
                returned: vec![],
                fail: true,
            },
            LimiterMessage::Record {
                hash: "ab\"c".into(),
            },
            LimiterMessage::Knows {
                hash: "ff".into(),
                fail: true,
            },
        ] {
            assert_eq!(LimiterMessage::from_json(m.to_json().as_bytes()), Some(m));
        }
    }

    #[test]
    fn limiter_messages_as_the_previous_version_wrote_them_still_read() {
        // serde's derive left out `returned` when empty; the defaults were optional.
        let old = br#"{"op":"take","policy":{"limit":600,"window_ms":60000,"cooldown_ms":0},"want":1,"hold_ms":0}"#;
        assert_eq!(
            LimiterMessage::from_json(old),
            Some(LimiterMessage::Take {
                policy: POLICY,
                want: 1,
                hold_ms: 0,
                ahead: false,
                returned: vec![],
                fail: false,
            })
        );
        assert_eq!(
            LimiterMessage::from_json(br#"{"op":"knows","hash":"aa"}"#),
            Some(LimiterMessage::Knows {
                hash: "aa".into(),
                fail: false
            })
        );
        for bad in [
            &br#"{"op":"take","want":1,"hold_ms":0}"#[..],
            br#"{"op":"record"}"#,
            br#"{"op":"forget","hash":"aa"}"#,
            br#"{"op":"knows","hash":"aa","fail":1}"#,
            b"not json",
        ] {
            assert_eq!(LimiterMessage::from_json(bad), None);
        }
    }

    #[test]
    fn the_stored_window_reads_back_and_reads_the_previous_layout() {
        let mut stored = LimiterStored::default();
        stored.window.decide(&POLICY, 1_000);
        stored.window.decide(&POLICY, 1_000);
        stored.known.record("h1", 1_000);
        stored.idle_after = 61_000;
        let text = stored.to_json();
        assert_eq!(
            LimiterStored::from_json(text.as_bytes()),
            Some(stored.clone())
        );
        let old = br#"{"window":{"accepted":[[1000,2]],"cooldown_until":0},"idle_after":61000,"known":{"entries":[["h1",1000]]}}"#;
        assert_eq!(LimiterStored::from_json(old), Some(stored.clone()));
        // `known` was added later: a state without it holds no keys.
        let older = br#"{"window":{"accepted":[[1000,2]],"cooldown_until":0},"idle_after":61000}"#;
        stored.known = KnownKeys::default();
        assert_eq!(LimiterStored::from_json(older), Some(stored));
        assert_eq!(LimiterStored::from_json(b"{\"window\":{}}"), None);
    }

    #[test]
    fn presence_messages_and_answers_read_back() {
        let seen = Seen {
            agent_id: "0190".into(),
            last_seen: 5,
            version: Some("1.2 \"beta\"".into()),
        };
        for m in [
            PresenceMessage::Beat {
                seen: seen.clone(),
                fail: false,
            },
            PresenceMessage::Read { now: 9, fail: true },
        ] {
            assert_eq!(PresenceMessage::from_json(m.to_json().as_bytes()), Some(m));
        }
        let bare = Seen {
            version: None,
            ..seen.clone()
        };
        let list = vec![seen, bare];
        let read = |text: &[u8]| seen_list_from_json(&json::parse(text).unwrap());
        assert_eq!(read(seen_list_to_json(&list).as_bytes()), Some(list));
        assert_eq!(read(b"[]"), Some(vec![]));
        // An entry the previous version stored.
        let old = br#"[{"agent_id":"a","last_seen":1,"version":null}]"#;
        assert_eq!(read(old).unwrap()[0].version, None);
        assert_eq!(read(br#"[{"agent_id":"a"}]"#), None);
    }

    #[test]
    fn a_decision_in_a_grant_is_nested_as_before() {
        let grant = crate::core::ratelimit::Grant {
            granted: 1,
            decision: Decision::Limited { retry_after_ms: 3 },
            held_at: 0,
        };
        assert_eq!(
            grant.to_json(),
            r#"{"granted":1,"decision":{"decision":"limited","retry_after_ms":3},"held_at":0}"#
        );
    }
}
