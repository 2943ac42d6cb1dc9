//! Agents and fallback routing through the real worker: heartbeats into the team's presence
//! Durable Object, the agent list, and the routing decision, with D1's word on which device
//! keys still count.

use crate::support::*;
use serde_json::{json, Value};
use std::{
    thread::sleep,
    time::{Duration, Instant},
};

const HEARTBEAT: &str = "/api/v1/agents/heartbeat";
const AGENTS: &str = "/api/v1/agents";
const ROUTE: &str = "/api/v1/tasks/route";

fn device(w: &Worker, team: &Team, name: &str) -> (String, String) {
    let created = new_key(
        w,
        &team.owner,
        &team.id,
        json!({"name": name, "kind": "device"}),
    );
    (
        created["id"].as_str().unwrap().to_string(),
        created["key"].as_str().unwrap().to_string(),
    )
}

fn beat(w: &Worker, dk: &str, version: Option<&str>) -> Reply {
    let call = Call::post(w, HEARTBEAT).bearer(dk);
    match version {
        Some(v) => call.json(&json!({ "version": v })).send(),
        None => call.send(),
    }
}

fn agents(w: &Worker, team: &Team) -> Vec<Value> {
    let r = team
        .call(Call::get(w, &format!("{AGENTS}?limit=200")))
        .send();
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["agents"].as_array().unwrap().clone()
}

fn route(w: &Worker, team: &Team) -> Reply {
    team.call(Call::post(w, ROUTE))
        .json(&json!({"target": "local"}))
        .send()
}

fn actions(w: &Worker, team: &Team) -> Vec<String> {
    team.call(Call::get(w, "/api/v1/audit-events"))
        .send()
        .json()["audit_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn an_agent_comes_online_and_goes_offline_after_the_ttl() {
    let w = spawn(Options::default().var("AGENT_TTL_SECS", "3"));
    let _log = w.on_failure();
    let team = Team::new(&w);
    let (id, dk) = device(&w, &team, "gpu-box");

    // Never seen: listed, offline, no time.
    let listed = agents(&w, &team);
    assert_eq!(
        listed,
        [
            json!({"agent_id": id, "name": "gpu-box", "online": false, "last_seen_at": null, "version": null})
        ]
    );

    let r = beat(&w, &dk, Some("comfy-agent/0.1.0"));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json(), json!({"agent_id": id, "next_heartbeat_in": 15}));
    let beaten = Instant::now();
    let listed = agents(&w, &team);
    assert_eq!(listed[0]["online"], true);
    assert_eq!(listed[0]["version"], "comfy-agent/0.1.0");
    assert!(listed[0]["last_seen_at"].as_str().unwrap().ends_with('Z'));
    let r = route(&w, &team);
    assert_eq!(r.status, 200, "{}", r.text);
    let body = r.json();
    assert_eq!(
        (
            &body["target"],
            &body["agent_id"],
            &body["reason"],
            &body["agents_online"]
        ),
        (
            &json!("local"),
            &json!(id),
            &json!("agent_online"),
            &json!(1)
        )
    );
    assert!(body["decided_at"].as_str().unwrap().ends_with('Z'));
    assert!(
        !actions(&w, &team).iter().any(|a| a.starts_with("task.")),
        "local decisions are not audited"
    );

    // Inside the window (well before 3 s) still online; past it, offline, and routing says so.
    assert!(
        beaten.elapsed() < Duration::from_millis(2500),
        "the machine is too slow for this check"
    );
    assert_eq!(agents(&w, &team)[0]["online"], true);
    sleep(Duration::from_millis(3200).saturating_sub(beaten.elapsed()));
    let listed = agents(&w, &team);
    assert_eq!(listed[0]["online"], false);
    assert!(
        listed[0]["last_seen_at"].is_string(),
        "still says when it was last seen"
    );
    let r = route(&w, &team);
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"]["type"], "no_compute_available");
    assert_eq!(r.json()["error"]["agents_online"], 0);
    // A new heartbeat brings it back at once.
    assert_eq!(beat(&w, &dk, None).status, 200);
    assert_eq!(route(&w, &team).json()["target"], "local");
}

/// Issue 16: an agent beating faster than once a second costs one presence write per second
/// (per isolate), not one per heartbeat; a new version is written at once, and every
/// heartbeat still reads its device key.
#[test]
fn rapid_heartbeats_are_written_once_a_second_and_a_new_version_at_once() {
    let w = worker();
    let _log = w.on_failure();
    let team = Team::new(w);
    let (id, dk) = device(w, &team, "eager");
    let started = Instant::now();
    let replies: Vec<Reply> = (0..20).map(|_| beat(w, &dk, Some("1.0"))).collect();
    let elapsed = started.elapsed();
    assert!(replies.iter().all(|r| r.status == 200));
    assert!(
        elapsed < Duration::from_secs(5),
        "the machine is too slow for this check"
    );
    let lines: Vec<Value> = replies.iter().map(|r| w.log_line_of(r)).collect();
    assert!(
        lines.iter().all(|l| l["d1_calls"] == 1),
        "the key is read every time"
    );
    // Object calls: the limiter's leases (1, 2, 4, 8 and 16 tokens: about five calls for
    // twenty requests) and one presence write per second begun. One write per heartbeat
    // would make at least twenty.
    let calls: u64 = lines.iter().map(|l| l["do_calls"].as_u64().unwrap()).sum();
    assert!(
        calls <= 8 + elapsed.as_secs(),
        "{calls} object calls for 20 heartbeats in {elapsed:?}"
    );
    assert_eq!(agents(w, &team)[0]["version"], "1.0");

    let r = beat(w, &dk, Some("1.1"));
    assert_eq!(r.status, 200);
    let listed = agents(w, &team);
    assert_eq!(
        (
            &listed[0]["agent_id"],
            &listed[0]["online"],
            &listed[0]["version"]
        ),
        (&json!(id), &json!(true), &json!("1.1"))
    );
    // Even right after a written heartbeat, a failing object is reported, not skipped.
    Call::post(w, HEARTBEAT)
        .bearer(&dk)
        .json(&json!({"version": "1.1"}))
        .header("X-Test-Fail-Presence", "1")
        .send()
        .assert_error(503, "service_unavailable");
}

#[test]
fn two_agents_and_one_revoked() {
    let w = worker();
    let _log = w.on_failure();
    let team = Team::new(w);
    let (first_id, first) = device(w, &team, "first");
    let (second_id, second) = device(w, &team, "second");
    assert_eq!(beat(w, &first, None).status, 200);
    sleep(Duration::from_millis(20));
    assert_eq!(beat(w, &second, None).status, 200);
    assert_eq!(
        agents(w, &team)
            .iter()
            .filter(|a| a["online"] == true)
            .count(),
        2
    );
    let r = route(w, &team).json();
    assert_eq!(
        (&r["agent_id"], &r["agents_online"]),
        (&json!(second_id), &json!(2)),
        "the most recently seen"
    );

    let revoked = team
        .call(Call::delete(w, &format!("/api/v1/api-keys/{second_id}")))
        .send();
    assert_eq!(revoked.status, 200);
    // Gone from the list and the routing at once, and its next heartbeat is refused.
    let listed = agents(w, &team);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["agent_id"], first_id.as_str());
    let r = route(w, &team).json();
    assert_eq!(
        (&r["agent_id"], &r["agents_online"]),
        (&json!(first_id), &json!(1))
    );
    beat(w, &second, None).assert_error(401, "unauthorized");
}

#[test]
fn a_route_decision_is_one_database_round_trip_and_a_lost_right_counts_at_once() {
    let w = worker();
    let _log = w.on_failure();
    let team = Team::new(w);
    let (agent_id, dk) = device(w, &team, "local");
    assert_eq!(beat(w, &dk, None).status, 200);
    let member = unique_user("member");
    add_member(w, &team.owner, &team.id, &member, "member");
    let (sk, sk_id) = team.key_and_id(
        w,
        json!({"name": "router", "kind": "secret", "scopes": ["cloud_providers:use"]}),
    );
    let as_member = || {
        Call::post(w, ROUTE)
            .bearer(&token(&member))
            .header("X-Team-ID", &team.id)
            .send()
    };
    let as_key = || Call::post(w, ROUTE).bearer(&sk).send();
    // The first call of a caller, and the later ones (whose presence read runs beside the
    // batch): each reads the caller, the credential and the device keys in one D1 batch.
    for r in [as_member(), as_member(), as_key(), as_key()] {
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(
            (&r.json()["target"], &r.json()["agent_id"]),
            (&json!("local"), &json!(agent_id))
        );
        let line = w.log_line_of(&r);
        assert_eq!(line["d1_calls"], 1, "{line}");
    }
    // Removed, revoked: refused on the very next call, though this isolate remembers the
    // caller's team.
    let removed = Call::delete(w, &format!("/api/v1/team/members/{member}"))
        .bearer(&token(&team.owner))
        .header("X-Team-ID", &team.id)
        .send();
    assert_eq!(removed.status, 204, "{}", removed.text);
    as_member().assert_error(403, "forbidden");
    let revoked = team
        .call(Call::delete(w, &format!("/api/v1/api-keys/{sk_id}")))
        .send();
    assert_eq!(revoked.status, 200);
    as_key().assert_error(401, "unauthorized");
    // A failing presence object is reported on the path beside the batch too.
    let r = route(w, &team);
    assert_eq!(r.status, 200, "{}", r.text);
    team.call(Call::post(w, ROUTE))
        .header("X-Test-Fail-Presence", "1")
        .send()
        .assert_error(503, "service_unavailable");
}

#[test]
fn fallback_needs_it_on_an_active_key_and_no_rejection() {
    let w = worker();
    let _log = w.on_failure();
    let team = Team::new(w);
    let expect_no_compute = |reason: &str, words: &str| {
        let r = route(w, &team);
        assert_eq!(r.status, 503, "{}", r.text);
        let e = &r.json()["error"];
        assert_eq!(e["type"], "no_compute_available");
        assert_eq!(e["reason"], reason);
        assert!(e["message"].as_str().unwrap().contains(words), "{e}");
        assert_eq!(e["agents_online"], 0);
        assert!(e["decided_at"].is_string());
    };
    // No credential at all.
    expect_no_compute("no_active_key", "no active ComfyUI Cloud key");

    let key = format!("comfyui-route-{}", unique_user("k").replace('-', "x"));
    assert_eq!(
        team.put(w, json!({"api_key": key, "cloud_fallback": true}))
            .status,
        200
    );
    let r = route(w, &team);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json(),
        json!({"target": "comfy_cloud", "reason": "no_local_agent", "agents_online": 0, "decided_at": r.json()["decided_at"]})
    );

    // Turning fallback off changes the very next answer.
    let patch = |on: bool| {
        team.call(Call::patch(w, CREDENTIAL_PATH))
            .json(&json!({ "cloud_fallback": on }))
            .send()
    };
    assert_eq!(patch(false).status, 200);
    expect_no_compute("no_local_agent_and_fallback_off", "cloud_fallback is off");
    assert_eq!(patch(true).status, 200);
    assert_eq!(route(w, &team).json()["target"], "comfy_cloud");

    // The provider rejects the key on a proxied call: the next answer refuses.
    stub().forget(&key);
    let sk = team.key(
        w,
        json!({"name": "use", "kind": "secret", "scopes": ["cloud_providers:use"]}),
    );
    let proxied = Call::get(w, "/api/v1/cloud-providers/comfy-cloud/proxy/api/v2/jobs")
        .bearer(&sk)
        .send();
    assert_eq!(proxied.status, 401);
    expect_no_compute("provider_rejected_key", "rejected");

    // Revoked: the next answer says there is no key.
    assert_eq!(
        team.call(Call::delete(w, CREDENTIAL_PATH)).send().status,
        200
    );
    expect_no_compute("no_active_key", "no active ComfyUI Cloud key");

    // Each fallback and each refusal was audited; newest first.
    let audited: Vec<String> = actions(w, &team)
        .into_iter()
        .filter(|a| a.starts_with("task."))
        .collect();
    assert_eq!(
        audited,
        [
            "task.no_compute",
            "task.no_compute",
            "task.routed_to_cloud",
            "task.no_compute",
            "task.routed_to_cloud",
            "task.no_compute",
        ]
    );
    // An sk- key with the use scope may ask too; one without it may not.
    assert_eq!(Call::post(w, ROUTE).bearer(&sk).send().status, 503);
    let plain = team.key(w, json!({"name": "rw", "kind": "secret"}));
    Call::post(w, ROUTE)
        .bearer(&plain)
        .send()
        .assert_error(403, "forbidden");
}

#[test]
fn one_teams_agents_never_count_for_another() {
    let w = worker();
    let _log = w.on_failure();
    let a = Team::new(w);
    let b = Team::new(w);
    let (_, b_dk) = device(w, &b, "b-agent");
    assert_eq!(beat(w, &b_dk, None).status, 200);
    assert_eq!(route(w, &b).json()["target"], "local");
    assert!(agents(w, &a).is_empty());
    let r = route(w, &a);
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"]["agents_online"], 0);
    // B's device key names B whatever X-Team-ID says.
    let r = Call::post(w, HEARTBEAT)
        .bearer(&b_dk)
        .header("X-Team-ID", &a.id)
        .send();
    assert_eq!(r.status, 200);
    assert!(agents(w, &a).is_empty());
}

#[test]
fn only_device_keys_send_heartbeats() {
    let w = worker();
    let _log = w.on_failure();
    let team = Team::new(w);
    let sk = team.key(
        w,
        json!({"name": "sk", "kind": "secret", "scopes": ["cloud_providers:use"]}),
    );
    Call::post(w, HEARTBEAT)
        .bearer(&sk)
        .send()
        .assert_error(403, "forbidden");
    team.call(Call::post(w, HEARTBEAT))
        .send()
        .assert_error(403, "forbidden");
    Call::post(w, HEARTBEAT)
        .send()
        .assert_error(401, "unauthorized");
    let (_, dk) = device(w, &team, "d");
    for bad in [
        json!({"version": ""}),
        json!({"version": "x".repeat(51)}),
        json!({"agent_id": "other"}),
    ] {
        Call::post(w, HEARTBEAT)
            .bearer(&dk)
            .json(&bad)
            .send()
            .assert_error(400, "invalid_request");
    }
    // Device keys may not list agents or route; a reading sk- key may list.
    Call::get(w, AGENTS)
        .bearer(&dk)
        .send()
        .assert_error(403, "forbidden");
    Call::post(w, ROUTE)
        .bearer(&dk)
        .send()
        .assert_error(403, "forbidden");
    let reader = team.key(
        w,
        json!({"name": "r", "kind": "secret", "scopes": ["cloud_providers:read"]}),
    );
    assert_eq!(Call::get(w, AGENTS).bearer(&reader).send().status, 200);
}

#[test]
fn an_unreachable_presence_object_fails_closed() {
    let w = worker();
    let _log = w.on_failure();
    let team = Team::new(w);
    let (_, dk) = device(w, &team, "d");
    let r = Call::post(w, HEARTBEAT)
        .bearer(&dk)
        .header("X-Test-Fail-Presence", "1")
        .send();
    r.assert_error(503, "service_unavailable");
    assert!(r.header("retry-after").is_some());
    let r = team
        .call(Call::post(w, ROUTE))
        .header("X-Test-Fail-Presence", "1")
        .send();
    r.assert_error(503, "service_unavailable");
}

#[test]
fn two_hundred_agents_beating_at_once_are_all_online() {
    let w = worker();
    let _log = w.on_failure();
    let team = Team::new(w);
    let keys: Vec<(String, String)> = (0..200)
        .map(|i| device(w, &team, &format!("agent-{i}")))
        .collect();
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = keys
            .chunks(4)
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|(_, dk)| beat(w, dk, Some("1.0")).status)
                        .collect::<Vec<u16>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let listed = agents(w, &team);
    assert_eq!(listed.len(), 200);
    assert!(listed
        .iter()
        .all(|a| a["online"] == true && a["version"] == "1.0"));
    assert_eq!(route(w, &team).json()["agents_online"], 200);
}
