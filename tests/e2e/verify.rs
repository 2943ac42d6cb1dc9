//! Verification with the provider: every outcome of the check on save, re-checks with
//! `POST …/verify`, and the switch that turns it off. Each test reads what the stub
//! received, not only what the worker answered.

use crate::support::*;
use serde_json::{json, Value};

const VERIFY_PATH: &str = "/api/v1/cloud-providers/comfy-cloud/verify";

/// A key unique to this run, with `prefix` (the stub answers `stub-…` keys specially).
fn key(prefix: &str) -> String {
    format!("{prefix}{}", unique_user("key").replace('-', "x"))
}

/// The account checks the stub received for `key`.
fn checks_of(key: &str) -> Vec<Value> {
    stub().account_checks_of(key)
}

fn verification(reply: &Reply) -> Value {
    reply.json()["verification"].clone()
}

#[test]
fn a_key_the_provider_accepts_is_saved_verified() {
    let w = worker();
    let _log = w.on_failure();
    let team = Team::new(w);
    let good = key("comfyui-good-");
    let r = team.put(w, json!({ "api_key": good }));
    assert_eq!(r.status, 200, "{}", r.text);
    let v = verification(&r);
    assert_eq!(v["state"], "verified");
    assert!(v["checked_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert!(v.get("reason").is_none(), "{v}");
    assert_eq!(r.json()["last_used_at"], Value::Null);
    // The stub got exactly one check, with the key as Bearer, and nothing of the caller's.
    let seen = checks_of(&good);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["method"], "GET");
    assert!(seen[0]["headers"].get("x-team-id").is_none());
    assert_eq!(team.row(w)["verification_state"], "verified");
}

/// The check's answer is read to its end, not cancelled, so the runtime keeps the
/// connection to the provider: checks in a row do not each open a new one (at the edge,
/// each would be a TLS handshake). Cancelled, five checks came on five connections.
#[test]
fn checks_in_a_row_reuse_the_connection_to_the_provider() {
    let w = worker();
    let _log = w.on_failure();
    let team = Team::new(w);
    let keys: Vec<String> = (0..5).map(|_| key("comfyui-good-")).collect();
    for k in &keys {
        let r = team.put(w, json!({ "api_key": k }));
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(verification(&r)["state"], "verified");
    }
    let connections: std::collections::BTreeSet<u64> = keys
        .iter()
        .flat_map(|k| checks_of(k))
        .filter_map(|check| check["connection"].as_u64())
        .collect();
    assert!(
        !connections.is_empty() && connections.len() < keys.len(),
        "{} checks came on connections {connections:?}",
        keys.len()
    );
}

#[test]
fn a_key_the_provider_refuses_is_422_and_nothing_is_saved() {
    let w = worker();
    let _log = w.on_failure();
    let team = Team::new(w);
    let first = key("comfyui-first-");
    assert_eq!(team.put(w, json!({ "api_key": first })).status, 200);
    let before = team.row(w);
    let audit_before = team.audit_count(w);

    for refused in [key("stub-401-"), key("stub-403-")] {
        plaintexts::watch(&refused);
        let r = team.put(w, json!({ "api_key": refused, "cloud_fallback": true }));
        r.assert_error(422, "provider_key_rejected");
        let message = r.message();
        assert!(
            message.contains("development") && message.contains(&stub().base_url),
            "the message names this deployment's environment: {message}"
        );
        // The provider's own body is never echoed.
        assert!(!message.contains("Invalid or expired") && !message.contains("lacks access"));
        assert_eq!(checks_of(&refused).len(), 1);
    }
    // The previous credential is exactly as it was: same row, same key, no audit event.
    assert_eq!(team.row(w), before);
    assert_eq!(team.decrypted(w), first);
    assert_eq!(team.audit_count(w), audit_before);
}

#[test]
fn when_the_provider_cannot_say_the_key_is_saved_unverified() {
    let w = worker();
    let _log = w.on_failure();
    for prefix in ["stub-429-", "stub-500-", "stub-slow-"] {
        let team = Team::new(w);
        let k = key(prefix);
        let started = std::time::Instant::now();
        let r = team.put(w, json!({ "api_key": k }));
        assert_eq!(r.status, 200, "{prefix}: {}", r.text);
        let v = verification(&r);
        assert_eq!(
            (v["state"].as_str(), v["reason"].as_str()),
            (Some("unverified"), Some("provider_unavailable")),
            "{prefix}"
        );
        assert!(v["checked_at"].is_string());
        assert_eq!(team.decrypted(w), k, "{prefix}: saved");
        if prefix == "stub-slow-" {
            // COMFY_CLOUD_VERIFY_TIMEOUT_MS is 2 s in tests; the stub answers after 8.
            assert!(
                started.elapsed().as_secs_f64() < 7.0,
                "{:?}",
                started.elapsed()
            );
        }
    }
}

#[test]
fn a_redirect_is_not_followed_and_leaves_the_key_unverified() {
    let w = worker();
    let _log = w.on_failure();
    let team = Team::new(w);
    let k = key("stub-302-");
    let r = team.put(w, json!({ "api_key": k }));
    assert_eq!(r.status, 200, "{}", r.text);
    let v = verification(&r);
    assert_eq!(v["state"], "unverified");
    assert_eq!(v["reason"], "provider_unexpected_response");
    // Nothing went to the redirect's target, let alone with the key.
    let followed: Vec<Value> = stub()
        .requests()
        .into_iter()
        .filter(|r| r["path"] == "/__stub/signed/account")
        .collect();
    assert!(followed.is_empty(), "{followed:?}");
}

#[test]
fn a_provider_that_cannot_be_reached_leaves_the_key_unverified() {
    // An origin on a port nobody listens on: a network error, not a timeout.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let w = spawn(Options::default().var("COMFY_CLOUD_ORIGIN", &dead));
    let _log = w.on_failure();
    let team = Team::new(&w);
    let r = team.put(&w, json!({ "api_key": key("comfyui-offline-") }));
    assert_eq!(r.status, 200, "{}", r.text);
    let v = verification(&r);
    assert_eq!(v["state"], "unverified");
    assert_eq!(v["reason"], "provider_unavailable");
}

#[test]
fn verify_rechecks_the_stored_key_and_records_each_change() {
    let w = worker();
    let _log = w.on_failure();
    let team = Team::new(w);
    let k = key("comfyui-recheck-");
    let put = team.put(w, json!({ "api_key": k }));
    assert_eq!(verification(&put)["state"], "verified");
    let etag = put.header("etag").unwrap().to_string();

    // The provider revokes the key: a re-check marks it rejected and keeps it stored.
    stub().forget(&k);
    let r = team.call(Call::post(w, VERIFY_PATH)).send();
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(verification(&r)["state"], "rejected");
    assert_eq!(verification(&r)["reason"], "provider_rejected");
    assert_eq!(r.json()["credential_status"], "active");
    assert_ne!(
        r.header("etag").unwrap(),
        etag,
        "the representation changed"
    );
    assert_eq!(team.decrypted(w), k, "the key stays stored");
    assert_eq!(checks_of(&k).len(), 2);

    // Checking again finds the same: no new audit event for an unchanged state.
    let events = team.audit_count(w);
    let again = team.call(Call::post(w, VERIFY_PATH)).send();
    assert_eq!(verification(&again)["state"], "rejected");
    assert_eq!(team.audit_count(w), events);

    // The provider takes it back: verified again, and the change is audited.
    stub().allow(&k);
    let back = team.call(Call::post(w, VERIFY_PATH)).send();
    assert_eq!(verification(&back)["state"], "verified");
    let audit = team
        .call(Call::get(w, "/api/v1/audit-events"))
        .send()
        .json();
    let actions: Vec<&str> = audit["audit_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .filter(|a| a.starts_with("credential."))
        .collect();
    // Newest first; the first save is recorded by its put alone.
    assert_eq!(
        actions,
        [
            "credential.verification.verified",
            "credential.verification.rejected",
            "credential.put"
        ],
        "{actions:?}"
    );
    // GET shows what the last check found.
    assert_eq!(verification(&team.get(w))["state"], "verified");
}

#[test]
fn verify_needs_write_permission_and_an_active_key() {
    let w = worker();
    let _log = w.on_failure();
    let team = Team::new(w);
    team.call(Call::post(w, VERIFY_PATH))
        .send()
        .assert_error(404, "not_found");
    assert_eq!(
        team.put(w, json!({ "api_key": key("comfyui-perm-") }))
            .status,
        200
    );
    let device = team.key(w, json!({"name": "gpu", "kind": "device"}));
    Call::post(w, VERIFY_PATH)
        .bearer(&device)
        .send()
        .assert_error(403, "forbidden");
    let reader = team.key(
        w,
        json!({"name": "r", "kind": "secret", "scopes": ["cloud_providers:read"]}),
    );
    Call::post(w, VERIFY_PATH)
        .bearer(&reader)
        .send()
        .assert_error(403, "forbidden");
    assert_eq!(
        team.call(Call::delete(w, CREDENTIAL_PATH)).send().status,
        200
    );
    team.call(Call::post(w, VERIFY_PATH))
        .send()
        .assert_error(409, "conflict");
}

#[test]
fn with_verification_off_nothing_is_sent_and_keys_are_saved_unverified() {
    let w = spawn(Options::default().var("COMFY_CLOUD_VERIFY", "off"));
    let _log = w.on_failure();
    let team = Team::new(&w);
    let k = key("stub-401-off-");
    plaintexts::watch(&k);
    let r = team.put(&w, json!({ "api_key": k }));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        verification(&r),
        json!({"state": "unverified", "checked_at": null, "reason": "verification_disabled"})
    );
    assert!(checks_of(&k).is_empty(), "no check was sent");
    let m = team.call(Call::post(&w, VERIFY_PATH)).send();
    m.assert_error(409, "conflict");
    assert!(m.message().contains("COMFY_CLOUD_VERIFY=off"));
}

#[test]
fn deployed_environments_refuse_a_plain_http_origin() {
    let w = spawn(
        Options::default()
            .var("ENVIRONMENT", "staging")
            .var("COMFY_CLOUD_ORIGIN", &stub().base_url),
    );
    let _log = w.on_failure();
    let r = Call::get(&w, "/api/v1/teams").bearer(&token("x")).send();
    r.assert_error(503, "service_unavailable");
    // The worker's log line, once wrangler has printed it, names the variable.
    let error = w.log_line_of(&r)["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        error.contains("COMFY_CLOUD_ORIGIN") && error.contains("must be https"),
        "the log names the variable: {error}"
    );
}
