//! Agents and fallback routing: when a device key's agent counts as online, and where a
//! task goes. Pure: presence comes in as last-seen times, the time is a parameter, and
//! the decision is made when asked, so nothing depends on an alarm firing.

use serde_json::Value;

use super::{
    body::{Fields, FromBody},
    credentials::CredentialRecord,
    error::{ApiError, ErrorKind},
    json::{self, Obj, ToJson},
    time::{rfc3339, UnixMillis},
    verify::State,
};

/// What an agent is told: beat again in this many seconds.
pub const HEARTBEAT_INTERVAL_SECS: u32 = 15;
/// An agent is online while its last heartbeat is younger than this (`AGENT_TTL_SECS`).
pub const DEFAULT_TTL_SECS: u32 = 45;

/// `POST /api/v1/agents/heartbeat`, whose body is optional.
#[derive(Debug, Default)]
pub struct Heartbeat {
    /// `null` reads as left out.
    pub version: Option<String>,
}

impl FromBody for Heartbeat {
    const FIELDS: &'static [&'static str] = &["version"];
    fn read(f: &Fields<'_>) -> Result<Self, ApiError> {
        Ok(Heartbeat {
            version: f.nullable_string("version")?,
        })
    }
}

impl Heartbeat {
    pub fn validate(&self) -> Result<(), ApiError> {
        if let Some(v) = &self.version {
            let len = v.chars().count();
            if !(1..=50).contains(&len) || v.chars().any(char::is_control) || v.trim().is_empty() {
                return Err(ApiError::invalid_request(
                    "`version` must be 1 to 50 characters, not blank, with no control characters",
                ));
            }
        }
        Ok(())
    }
}

/// One agent's last heartbeat, as the team's presence object keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub agent_id: String,
    pub last_seen: UnixMillis,
    pub version: Option<String>,
}

impl Seen {
    /// `{"agent_id": …, "last_seen": …, "version": … or null}`.
    pub fn to_json(&self) -> String {
        let o = Obj::new()
            .str("agent_id", &self.agent_id)
            .int("last_seen", self.last_seen);
        match &self.version {
            Some(v) => o.str("version", v),
            None => o.raw("version", "null"),
        }
        .done()
    }

    pub fn from_json(v: &Value) -> Option<Seen> {
        Some(Seen {
            agent_id: json::string(v, "agent_id")?,
            last_seen: json::int(v, "last_seen")?,
            version: json::nullable_string(v, "version")?,
        })
    }
}

/// Online while the last heartbeat is younger than the TTL: at exactly `ttl` old, offline.
pub fn is_online(last_seen: Option<UnixMillis>, now: UnixMillis, ttl_secs: u32) -> bool {
    last_seen.is_some_and(|at| now - at < i64::from(ttl_secs) * 1000)
}

/// A device key of the team, as D1 lists it: only keys that are neither revoked nor
/// expired, so a revoked key leaves the list and the routing at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceKey {
    pub id: String,
    pub name: String,
}

pub struct AgentView {
    pub agent_id: String,
    pub name: String,
    pub online: bool,
    pub last_seen_at: Option<String>,
    pub version: Option<String>,
}

impl ToJson for AgentView {
    fn to_json(&self) -> String {
        Obj::new()
            .str("agent_id", &self.agent_id)
            .str("name", &self.name)
            .bool("online", self.online)
            .opt_str("last_seen_at", self.last_seen_at.as_deref())
            .opt_str("version", self.version.as_deref())
            .done()
    }
}

/// The listing: every usable device key, with what presence says of it.
pub fn agents(
    devices: &[DeviceKey],
    seen: &[Seen],
    now: UnixMillis,
    ttl_secs: u32,
) -> Vec<AgentView> {
    devices
        .iter()
        .map(|d| {
            let s = seen.iter().find(|s| s.agent_id == d.id);
            AgentView {
                agent_id: d.id.clone(),
                name: d.name.clone(),
                online: is_online(s.map(|s| s.last_seen), now, ttl_secs),
                last_seen_at: s.map(|s| rfc3339(s.last_seen)),
                version: s.and_then(|s| s.version.clone()),
            }
        })
        .collect()
}

/// `POST /api/v1/tasks/route`. `target` is `local`, also the default.
#[derive(Debug)]
pub struct RouteRequest {
    /// `local` when left out.
    pub target: String,
}

impl FromBody for RouteRequest {
    const FIELDS: &'static [&'static str] = &["target"];
    fn read(f: &Fields<'_>) -> Result<Self, ApiError> {
        Ok(RouteRequest {
            target: f.string("target")?.unwrap_or_else(local),
        })
    }
}

fn local() -> String {
    "local".into()
}

impl Default for RouteRequest {
    fn default() -> Self {
        RouteRequest { target: local() }
    }
}

impl RouteRequest {
    pub fn validate(&self) -> Result<(), ApiError> {
        if self.target != "local" {
            return Err(ApiError::invalid_request("`target` must be local"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An agent is online: the most recently seen one.
    Local { agent_id: String },
    /// No agent, and the team's ComfyUI Cloud key may take the task.
    ComfyCloud,
}

/// Why no compute is available, in the order the conditions are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoCompute {
    /// No agent online and `cloud_fallback` is off.
    FallbackOff,
    /// No agent online and no active ComfyUI Cloud key (none configured, or revoked).
    NoActiveKey,
    /// Fallback is on, the key is active, and the provider rejected it.
    KeyRejected,
}

impl NoCompute {
    pub fn reason(self) -> &'static str {
        match self {
            NoCompute::FallbackOff => "no_local_agent_and_fallback_off",
            NoCompute::NoActiveKey => "no_active_key",
            NoCompute::KeyRejected => "provider_rejected_key",
        }
    }
    pub fn message(self) -> &'static str {
        match self {
            NoCompute::FallbackOff => {
                "No local agent is online and cloud_fallback is off for ComfyUI Cloud"
            }
            NoCompute::NoActiveKey => {
                "No local agent is online, and the team has no active ComfyUI Cloud key to fall back to"
            }
            NoCompute::KeyRejected => {
                "No local agent is online, and cloud_fallback cannot be used: ComfyUI Cloud rejected the team's key"
            }
        }
    }
}

/// The routing decision, in the contract's order: a local agent first, then ComfyUI Cloud
/// when fallback is on, the key active and not rejected.
pub fn decide(
    seen_online: &[Seen],
    credential: Option<&CredentialRecord>,
) -> Result<Target, NoCompute> {
    if let Some(latest) = seen_online.iter().max_by(|a, b| {
        a.last_seen
            .cmp(&b.last_seen)
            .then_with(|| b.agent_id.cmp(&a.agent_id))
    }) {
        return Ok(Target::Local {
            agent_id: latest.agent_id.clone(),
        });
    }
    // No key (none configured, or revoked, which also turns fallback off) says more than
    // "fallback is off", so it is named first.
    let Some(credential) = credential.filter(|c| c.is_active()) else {
        return Err(NoCompute::NoActiveKey);
    };
    if !credential.cloud_fallback {
        return Err(NoCompute::FallbackOff);
    }
    if credential.verification.state == State::Rejected {
        return Err(NoCompute::KeyRejected);
    }
    Ok(Target::ComfyCloud)
}

/// The presence entries that count: usable device keys, seen within the TTL.
pub fn online(devices: &[DeviceKey], seen: &[Seen], now: UnixMillis, ttl_secs: u32) -> Vec<Seen> {
    seen.iter()
        .filter(|s| devices.iter().any(|d| d.id == s.agent_id))
        .filter(|s| is_online(Some(s.last_seen), now, ttl_secs))
        .cloned()
        .collect()
}

pub struct RouteView<'a> {
    pub target: &'static str,
    /// Left out when `None`.
    pub agent_id: Option<&'a str>,
    pub reason: &'static str,
    pub agents_online: usize,
    pub decided_at: String,
}

impl ToJson for RouteView<'_> {
    fn to_json(&self) -> String {
        let mut o = Obj::new().str("target", self.target);
        if let Some(id) = self.agent_id {
            o = o.str("agent_id", id);
        }
        o.str("reason", self.reason)
            .int("agents_online", self.agents_online as i64)
            .str("decided_at", &self.decided_at)
            .done()
    }
}

impl Target {
    pub fn view(&self, agents_online: usize, now: UnixMillis) -> RouteView<'_> {
        match self {
            Target::Local { agent_id } => RouteView {
                target: "local",
                agent_id: Some(agent_id),
                reason: "agent_online",
                agents_online,
                decided_at: rfc3339(now),
            },
            Target::ComfyCloud => RouteView {
                target: "comfy_cloud",
                agent_id: None,
                reason: "no_local_agent",
                agents_online,
                decided_at: rfc3339(now),
            },
        }
    }
}

/// The 503 `no_compute_available`: the contract's error shape, whose `error` object also
/// carries the decision's `reason`, `agents_online` and `decided_at`.
pub fn no_compute_body(why: NoCompute, agents_online: usize, now: UnixMillis) -> String {
    let error = Obj::new()
        .str("type", ErrorKind::NoComputeAvailable.type_name())
        .str("message", why.message())
        .str("reason", why.reason())
        .int("agents_online", agents_online as i64)
        .str("decided_at", &rfc3339(now))
        .done();
    Obj::new().raw("error", &error).done()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{
        credentials::Status,
        providers,
        verify::{ProviderAnswer, Verification},
    };

    const NOW: UnixMillis = 1_750_000_000_000;

    fn seen(id: &str, ago_ms: i64) -> Seen {
        Seen {
            agent_id: id.into(),
            last_seen: NOW - ago_ms,
            version: None,
        }
    }

    fn device(id: &str) -> DeviceKey {
        DeviceKey {
            id: id.into(),
            name: format!("{id}-name"),
        }
    }

    fn credential(status: Status, fallback: bool, state: State) -> CredentialRecord {
        let mut verification = Verification::from_answer(ProviderAnswer::Status(200), NOW);
        verification.state = state;
        CredentialRecord {
            provider: providers::by_slug("comfy-cloud").unwrap(),
            status,
            cloud_fallback: fallback,
            created_at: NOW,
            updated_at: NOW,
            key_preview: "cfy...x".into(),
            version: 1,
            verification,
            last_used_at: None,
        }
    }

    #[test]
    fn online_is_strictly_younger_than_the_ttl() {
        assert!(is_online(Some(NOW - 44_999), NOW, 45));
        assert!(!is_online(Some(NOW - 45_000), NOW, 45));
        assert!(!is_online(None, NOW, 45));
        assert!(is_online(Some(NOW), NOW, 45));
    }

    #[test]
    fn only_usable_device_keys_count_and_are_listed() {
        let devices = [device("a"), device("b")];
        let seen = [seen("a", 1_000), seen("revoked", 1_000), seen("b", 50_000)];
        let online = online(&devices, &seen, NOW, 45);
        assert_eq!(
            online
                .iter()
                .map(|s| s.agent_id.as_str())
                .collect::<Vec<_>>(),
            ["a"]
        );
        let listed = agents(&devices, &seen, NOW, 45);
        assert_eq!(listed.len(), 2);
        assert!(listed[0].online && !listed[1].online);
        assert!(listed[1].last_seen_at.is_some());
        let never = agents(&[device("c")], &seen, NOW, 45);
        assert!(!never[0].online && never[0].last_seen_at.is_none());
    }

    #[test]
    fn routing_follows_the_contracts_order() {
        use State::*;
        use Status::*;
        let two = [seen("old", 10_000), seen("new", 1_000)];
        assert_eq!(
            decide(&two, None),
            Ok(Target::Local {
                agent_id: "new".into()
            }),
            "the most recently seen agent"
        );
        let ok = credential(Active, true, Verified);
        assert_eq!(decide(&[], Some(&ok)), Ok(Target::ComfyCloud));
        assert_eq!(
            decide(&[], Some(&credential(Active, true, Unverified))),
            Ok(Target::ComfyCloud)
        );
        assert_eq!(decide(&[], None), Err(NoCompute::NoActiveKey));
        assert_eq!(
            decide(&[], Some(&credential(Active, false, Verified))),
            Err(NoCompute::FallbackOff)
        );
        assert_eq!(
            decide(&[], Some(&credential(Revoked, true, Verified))),
            Err(NoCompute::NoActiveKey)
        );
        assert_eq!(
            decide(&[], Some(&credential(Active, true, Rejected))),
            Err(NoCompute::KeyRejected)
        );
        assert_eq!(
            decide(&[], Some(&credential(Active, false, Rejected))),
            Err(NoCompute::FallbackOff)
        );
        // An agent wins over a rejected key or no key at all.
        assert!(matches!(
            decide(&two, Some(&credential(Active, true, Rejected))),
            Ok(Target::Local { .. })
        ));
    }

    #[test]
    fn answers_carry_reason_count_and_time() {
        let v =
            serde_json::from_str::<serde_json::Value>(&Target::ComfyCloud.view(0, NOW).to_json())
                .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"target": "comfy_cloud", "reason": "no_local_agent", "agents_online": 0, "decided_at": "2025-06-15T15:06:40Z"})
        );
        let local = Target::Local {
            agent_id: "a1".into(),
        };
        let v = serde_json::from_str::<serde_json::Value>(&local.view(2, NOW).to_json()).unwrap();
        assert_eq!(v["target"], "local");
        assert_eq!(v["agent_id"], "a1");
        assert_eq!(v["agents_online"], 2);
        let e = serde_json::from_str::<serde_json::Value>(&no_compute_body(
            NoCompute::KeyRejected,
            0,
            NOW,
        ))
        .unwrap();
        assert_eq!(e["error"]["type"], "no_compute_available");
        assert_eq!(e["error"]["reason"], "provider_rejected_key");
        assert!(e["error"]["message"].as_str().unwrap().contains("rejected"));
    }

    #[test]
    fn heartbeat_and_route_bodies_are_checked() {
        assert!(Heartbeat {
            version: Some("1.2.3".into())
        }
        .validate()
        .is_ok());
        assert!(Heartbeat::default().validate().is_ok());
        for bad in ["", " ", "a\nb", &"x".repeat(51)] {
            assert_eq!(
                Heartbeat {
                    version: Some(bad.into())
                }
                .validate()
                .unwrap_err()
                .status(),
                400
            );
        }
        assert!(RouteRequest::default().validate().is_ok());
        assert_eq!(
            RouteRequest {
                target: "cloud".into()
            }
            .validate()
            .unwrap_err()
            .status(),
            400
        );
    }
}
