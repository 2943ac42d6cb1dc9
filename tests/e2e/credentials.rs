//! The credential endpoints of seeds 000 and 001 and their siblings, against real D1.

use crate::support::*;
use edge_credentials::core::credentials::preview;
use serde_json::{json, Value};

#[test]
fn the_seed_example_gives_the_seed_response() {
    let w = worker();
    let _log = w.on_failure();
    let team = Team::new(w);
    let r = team.put(
        w,
        json!({"api_key": "cfy_xxxxxxxxxxxxxxxxxxxx", "cloud_fallback": false}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let body = r.json();
    let fields: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields
            .iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>(),
        [
            "cloud_fallback",
            "created_at",
            "credential_status",
            "key_preview",
            "last_used_at",
            "provider_name",
            "updated_at",
            "verification"
        ]
        .into_iter()
        .collect()
    );
    assert_eq!(body["provider_name"], "comfy_cloud");
    assert_eq!(body["credential_status"], "active");
    // The seed's fields, plus what ComfyUI Cloud said of the key and when it was last used.
    assert_eq!(body["verification"]["state"], "verified");
    assert_eq!(body["last_used_at"], Value::Null);
    assert_eq!(body["cloud_fallback"], false);
    for t in ["created_at", "updated_at"] {
        let s = body[t].as_str().unwrap();
        assert!(
            s.len() == 20 && s.ends_with('Z') && &s[10..11] == "T",
            "{t}: {s}"
        );
    }
    // 24 characters: at most 8 shown, as first part ... last part.
    assert_eq!(body["key_preview"], "cfy_x...xxx");
    assert!(r.header("etag").is_some());
    let got = team.get(w);
    assert_eq!(got.status, 200);
    assert_eq!(got.json(), body);
    assert_eq!(got.header("etag"), r.header("etag"));
}

#[test]
fn cloud_fallback_defaults_to_false_and_a_second_put_keeps_created_at() {
    let w = worker();
    let _log = w.on_failure();
    let team = Team::new(w);
    let first = team
        .put(
            w,
            json!({"api_key": "comfyui-first-key-0000000000000000000000"}),
        )
        .json();
    assert_eq!(first["cloud_fallback"], false);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = team.put(
        w,
        json!({"api_key": "comfyui-second-key-111111111111111111111", "cloud_fallback": true}),
    );
    let second = second.json();
    assert_eq!(second["created_at"], first["created_at"]);
    assert_ne!(second["updated_at"], first["updated_at"]);
    assert_eq!(second["cloud_fallback"], true);
    assert_eq!(
        second["key_preview"],
        preview("comfyui-second-key-111111111111111111111")
    );
    assert_eq!(
        decrypt(&dev_ring(), &team.id, &team.row(w)),
        "comfyui-second-key-111111111111111111111"
    );
}

#[test]
fn every_status_code_of_the_endpoints() {
    let w = worker();
    let _log = w.on_failure();
    let team = Team::new(w);
    let good = json!({"api_key": "comfyui-abc"});
    // 401, 400 (X-Team-ID), 403 (not a member), 404 (provider; nothing configured yet), 405.
    Call::put(w, CREDENTIAL_PATH)
        .json(&good)
        .send()
        .assert_error(401, "unauthorized");
    Call::get(w, CREDENTIAL_PATH)
        .bearer(&token(&team.owner))
        .send()
        .assert_error(400, "invalid_request");
    Call::get(w, CREDENTIAL_PATH)
        .bearer(&token(&unique_user("stranger")))
        .header("X-Team-ID", &team.id)
        .send()
        .assert_error(403, "forbidden");
    team.call(Call::put(w, "/api/v1/cloud-providers/aws"))
        .json(&good)
        .send()
        .assert_error(404, "not_found");
    team.call(Call::get(w, "/api/v1/cloud-providers/comfy_cloud"))
        .send()
        .assert_error(404, "not_found");
    team.get(w).assert_error(404, "not_found");
    team.call(Call::post(w, CREDENTIAL_PATH))
        .json(&good)
        .send()
        .assert_error(405, "method_not_allowed");
    // 400 for every invalid body.
    for body in [
        json!({}),
        json!({"api_key": ""}),
        json!({"api_key": "   "}),
        json!({"api_key": "abc\ndef"}),
        json!({"api_key": "abc\u{0}def"}),
        json!({"api_key": "x".repeat(513)}),
        json!({"api_key": 42}),
        json!({"api_key": "ok", "cloud_fallback": "yes"}),
        json!({"api_key": "ok", "team_id": team.id}),
        json!({"api_key": "ok", "key_hash": "00"}),
    ] {
        team.put(w, body.clone())
            .assert_error(400, "invalid_request");
    }
    assert_eq!(
        team.put(w, json!({"api_key": "x".repeat(512)})).status,
        200,
        "512 characters"
    );
    // A key travels as an HTTP header, so it must be ASCII (the runtime would log any other
    // header value it is given, key and all).
    let e = team.put(w, json!({"api_key": "é".repeat(512)}));
    e.assert_error(400, "invalid_request");
    assert!(e.message().contains("ASCII"), "{}", e.message());
    // 413 and 415.
    let big = json!({"api_key": "x".repeat(17 * 1024)})
        .to_string()
        .into_bytes();
    team.call(Call::put(w, CREDENTIAL_PATH))
        .header("Content-Type", "application/json")
        .raw_body(big)
        .send()
        .assert_error(413, "payload_too_large");
    team.call(Call::put(w, CREDENTIAL_PATH))
        .header("Content-Type", "text/plain")
        .raw_body(b"{\"api_key\": \"x\"}".to_vec())
        .send()
        .assert_error(415, "unsupported_media_type");
    // 412 for a stale ETag, 409 for fallback on a revoked key.
    let etag = team.get(w).header("etag").unwrap().to_string();
    team.put(w, good.clone());
    let stale = team
        .call(Call::put(w, CREDENTIAL_PATH))
        .header("If-Match", &etag)
        .json(&good)
        .send();
    stale.assert_error(412, "precondition_failed");
    let fresh = team.get(w).header("etag").unwrap().to_string();
    assert_eq!(
        team.call(Call::put(w, CREDENTIAL_PATH))
            .header("If-Match", &fresh)
            .json(&good)
            .send()
            .status,
        200
    );
    assert_eq!(
        team.call(Call::delete(w, CREDENTIAL_PATH)).send().status,
        200
    );
    let r = team
        .call(Call::patch(w, CREDENTIAL_PATH))
        .json(&json!({"cloud_fallback": true}))
        .send();
    r.assert_error(409, "conflict");
    assert_eq!(r.message(), "cloud_fallback requires an active API key");
}

#[test]
fn patch_and_delete_honour_if_match() {
    let w = worker();
    let _log = w.on_failure();
    let team = Team::new(w);
    let etag_1 = team
        .put(w, json!({"api_key": "comfyui-abc"}))
        .header("etag")
        .unwrap()
        .to_string();
    let patched = team
        .call(Call::patch(w, CREDENTIAL_PATH))
        .header("If-Match", &etag_1)
        .json(&json!({"cloud_fallback": true}))
        .send();
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(patched.json()["cloud_fallback"], true);
    let etag_2 = patched.header("etag").unwrap().to_string();
    assert_ne!(etag_1, etag_2);
    team.call(Call::patch(w, CREDENTIAL_PATH))
        .header("If-Match", &etag_1)
        .json(&json!({"cloud_fallback": false}))
        .send()
        .assert_error(412, "precondition_failed");
    team.call(Call::delete(w, CREDENTIAL_PATH))
        .header("If-Match", &etag_1)
        .send()
        .assert_error(412, "precondition_failed");
    assert_eq!(
        team.get(w).json()["credential_status"],
        "active",
        "a refused write changes nothing"
    );
    assert_eq!(
        team.call(Call::delete(w, CREDENTIAL_PATH))
            .header("If-Match", &etag_2)
            .send()
            .status,
        200
    );
    team.call(Call::patch(w, CREDENTIAL_PATH))
        .json(&json!({}))
        .send()
        .assert_error(400, "invalid_request");
}

#[test]
fn if_match_star_needs_a_current_credential_and_nothing_more() {
    let w = worker();
    let _log = w.on_failure();
    let team = Team::new(w);
    fn star<'w>(team: &Team, call: Call<'w>) -> Call<'w> {
        team.call(call).header("If-Match", "*")
    }
    // No credential: nothing for `*` to match.
    star(&team, Call::put(w, CREDENTIAL_PATH))
        .json(&json!({"api_key": "comfyui-star-first"}))
        .send()
        .assert_error(412, "precondition_failed");
    assert_eq!(team.row(w), Value::Null);
    assert_eq!(
        team.put(w, json!({"api_key": "comfyui-star-one"})).status,
        200
    );
    // One exists, whatever its version: `*` matches it for PUT, PATCH and DELETE.
    let replaced = star(&team, Call::put(w, CREDENTIAL_PATH))
        .json(&json!({"api_key": "comfyui-star-two"}))
        .send();
    assert_eq!(replaced.status, 200, "{}", replaced.text);
    let patched = star(&team, Call::patch(w, CREDENTIAL_PATH))
        .json(&json!({"cloud_fallback": true}))
        .send();
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(
        star(&team, Call::delete(w, CREDENTIAL_PATH)).send().status,
        200
    );
    // A revoked credential is still a current representation.
    assert_eq!(
        star(&team, Call::put(w, CREDENTIAL_PATH))
            .json(&json!({"api_key": "comfyui-star-three"}))
            .send()
            .status,
        200
    );
    assert_eq!(team.decrypted(w), "comfyui-star-three");
}

#[test]
fn delete_revokes_destroys_the_ciphertext_and_keeps_the_row() {
    let w = worker();
    let _log = w.on_failure();
    let team = Team::new(w);
    let put = team
        .put(
            w,
            json!({"api_key": "comfyui-to-be-revoked-000000000000000", "cloud_fallback": true}),
        )
        .json();
    assert!(team.row(w)["ciphertext"].is_string());
    let r = team.call(Call::delete(w, CREDENTIAL_PATH)).send();
    assert_eq!(r.status, 200, "{}", r.text);
    let revoked = r.json();
    assert_eq!(revoked["credential_status"], "revoked");
    assert_eq!(revoked["cloud_fallback"], false);
    assert_eq!(revoked["created_at"], put["created_at"]);
    let row = team.row(w);
    assert_eq!(row["ciphertext"], Value::Null, "ciphertext destroyed");
    assert_eq!(row["status"], "revoked");
    // Repeating the DELETE is harmless, and GET still reports the status.
    let again = team.call(Call::delete(w, CREDENTIAL_PATH)).send();
    assert_eq!((again.status, again.json()), (200, revoked.clone()));
    assert_eq!(team.get(w).json(), revoked);
    // A new PUT brings it back, with the first configuration time.
    let back = team.put(w, json!({"api_key": "comfyui-new"})).json();
    assert_eq!(back["credential_status"], "active");
    assert_eq!(back["created_at"], put["created_at"]);
}

#[test]
fn read_and_write_permissions_follow_roles_scopes_and_key_kinds() {
    let w = worker();
    let _log = w.on_failure();
    let team = Team::new(w);
    assert_eq!(team.put(w, json!({"api_key": "comfyui-abc"})).status, 200);
    let [member, admin] = ["member", "admin"].map(unique_user);
    add_member(w, &team.owner, &team.id, &member, "member");
    add_member(w, &team.owner, &team.id, &admin, "admin");
    let as_user = |u: &str, c: Call| {
        c.bearer(&token(u))
            .header("X-Team-ID", &team.id)
            .send()
            .status
    };
    let body = json!({"api_key": "comfyui-xyz"});
    assert_eq!(as_user(&member, Call::get(w, CREDENTIAL_PATH)), 200);
    assert_eq!(
        as_user(&member, Call::put(w, CREDENTIAL_PATH).json(&body)),
        403
    );
    assert_eq!(as_user(&member, Call::delete(w, CREDENTIAL_PATH)), 403);
    assert_eq!(
        as_user(&admin, Call::put(w, CREDENTIAL_PATH).json(&body)),
        200
    );

    let device = team.key(w, json!({"name": "gpu", "kind": "device"}));
    let read_only = team.key(
        w,
        json!({"name": "r", "kind": "secret", "scopes": ["cloud_providers:read"]}),
    );
    let write_only = team.key(
        w,
        json!({"name": "w", "kind": "secret", "scopes": ["cloud_providers:write"]}),
    );
    let full = team.key(w, json!({"name": "rw", "kind": "secret"}));
    let as_key = |k: &str, c: Call| c.bearer(k).send().status;
    assert_eq!(as_key(&device, Call::get(w, CREDENTIAL_PATH)), 200);
    assert_eq!(
        as_key(&device, Call::put(w, CREDENTIAL_PATH).json(&body)),
        403,
        "dk- keys are read-only"
    );
    assert_eq!(
        as_key(
            &device,
            Call::patch(w, CREDENTIAL_PATH).json(&json!({"cloud_fallback": true}))
        ),
        403
    );
    assert_eq!(as_key(&device, Call::delete(w, CREDENTIAL_PATH)), 403);
    assert_eq!(as_key(&read_only, Call::get(w, CREDENTIAL_PATH)), 200);
    assert_eq!(
        as_key(&read_only, Call::put(w, CREDENTIAL_PATH).json(&body)),
        403
    );
    assert_eq!(as_key(&write_only, Call::get(w, CREDENTIAL_PATH)), 403);
    assert_eq!(
        as_key(&write_only, Call::put(w, CREDENTIAL_PATH).json(&body)),
        200
    );
    assert_eq!(as_key(&full, Call::get(w, "/api/v1/cloud-providers")), 200);
}

#[test]
fn a_key_acts_on_its_own_team_whatever_x_team_id_says() {
    let w = worker();
    let _log = w.on_failure();
    let (a, b) = (Team::new(w), Team::new(w));
    b.put(
        w,
        json!({"api_key": "comfyui-team-b-key-0000000000000000000"}),
    );
    let key_a = a.key(w, json!({"name": "a", "kind": "secret"}));
    // Naming team B changes nothing: the key writes and reads team A's credential.
    let r = Call::put(w, CREDENTIAL_PATH)
        .bearer(&key_a)
        .header("X-Team-ID", &b.id)
        .json(&json!({"api_key": "comfyui-team-a-key-1111111111111111111"}))
        .send();
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        decrypt(&dev_ring(), &a.id, &a.row(w)),
        "comfyui-team-a-key-1111111111111111111"
    );
    assert_eq!(
        decrypt(&dev_ring(), &b.id, &b.row(w)),
        "comfyui-team-b-key-0000000000000000000"
    );
    let read = Call::get(w, CREDENTIAL_PATH)
        .bearer(&key_a)
        .header("X-Team-ID", &b.id)
        .send()
        .json();
    assert_eq!(
        read["key_preview"],
        preview("comfyui-team-a-key-1111111111111111111")
    );
    Call::delete(w, CREDENTIAL_PATH)
        .bearer(&key_a)
        .header("X-Team-ID", &b.id)
        .send();
    assert_eq!(
        b.get(w).json()["credential_status"],
        "active",
        "team B untouched"
    );
    // A user of team A naming team B is refused; a user of C sees none of B.
    Call::get(w, CREDENTIAL_PATH)
        .bearer(&token(&a.owner))
        .header("X-Team-ID", &b.id)
        .send()
        .assert_error(403, "forbidden");
    let c = Team::new(w);
    c.get(w).assert_error(404, "not_found");
    assert_eq!(
        c.call(Call::get(w, "/api/v1/cloud-providers"))
            .send()
            .json(),
        json!({"cloud_providers": [], "next_cursor": null})
    );
}

#[test]
fn the_stored_row_holds_no_plaintext() {
    let w = worker();
    let _log = w.on_failure();
    let team = Team::new(w);
    let canary = format!(
        "comfyui-CANARY-{}-plaintext-must-not-be-stored",
        std::process::id()
    );
    assert_eq!(team.put(w, json!({ "api_key": canary })).status, 200);
    let row = team.row(w);
    assert!(!row.to_string().contains(&canary));
    assert!(row["ciphertext"]
        .as_str()
        .unwrap()
        .starts_with("v1.insecure-dev-1."));
    assert_eq!(decrypt(&dev_ring(), &team.id, &row), canary);
    // Every byte D1 keeps for this worker (database, WAL, journal), and its log.
    let mut files = vec![w.state_dir.clone()];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else if let Ok(bytes) = std::fs::read(&path) {
            let found = bytes
                .windows(canary.len())
                .any(|win| win == canary.as_bytes());
            assert!(!found, "plaintext key found in {}", path.display());
        }
    }
}

#[test]
fn the_list_shows_every_configured_provider() {
    let w = worker();
    let _log = w.on_failure();
    let team = Team::new(w);
    let list = |t: &Team| {
        t.call(Call::get(w, "/api/v1/cloud-providers"))
            .send()
            .json()
    };
    assert_eq!(
        list(&team),
        json!({"cloud_providers": [], "next_cursor": null})
    );
    let put = team.put(w, json!({"api_key": "comfyui-abc"})).json();
    assert_eq!(
        list(&team),
        json!({ "cloud_providers": [put], "next_cursor": null })
    );
}

#[test]
fn changes_are_audited_atomically_newest_first_with_cursors() {
    let w = worker();
    let _log = w.on_failure();
    let team = Team::new(w);
    let put = team.put(w, json!({"api_key": "comfyui-abc"}));
    let patch = team
        .call(Call::patch(w, CREDENTIAL_PATH))
        .json(&json!({"cloud_fallback": true}))
        .send();
    let stale = team
        .call(Call::put(w, CREDENTIAL_PATH))
        .header("If-Match", "\"999\"")
        .json(&json!({"api_key": "x"}))
        .send();
    assert_eq!(stale.status, 412);
    let delete = team.call(Call::delete(w, CREDENTIAL_PATH)).send();
    team.call(Call::delete(w, CREDENTIAL_PATH)).send(); // no change, no event

    let page = |query: &str| {
        let r = team
            .call(Call::get(w, &format!("/api/v1/audit-events{query}")))
            .send();
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()
    };
    let all = page("");
    let events = all["audit_events"].as_array().unwrap();
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "credential.delete",
            "credential.patch",
            "credential.put",
            "team.created"
        ]
    );
    assert_eq!(all["next_cursor"], Value::Null);
    let ids = [&delete, &patch, &put].map(|r| r.header("x-request-id").unwrap().to_string());
    for (event, request_id) in events.iter().zip(&ids) {
        assert_eq!(event["request_id"], request_id.as_str());
        assert_eq!(event["team_id"], team.id.as_str());
        assert_eq!(event["actor_kind"], "user");
        assert_eq!(event["actor_id"], team.owner.as_str());
        assert_eq!(event["provider"], "comfy_cloud");
        assert!(event["created_at"].as_str().unwrap().ends_with('Z'));
    }
    let first = page("?limit=3");
    assert_eq!(first["audit_events"].as_array().unwrap().len(), 3);
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a cursor while events remain");
    let second = page(&format!("?limit=3&cursor={cursor}"));
    assert_eq!(second["audit_events"].as_array().unwrap().len(), 1);
    assert_eq!(second["audit_events"][0]["action"], "team.created");
    assert_eq!(second["next_cursor"], Value::Null);
    team.call(Call::get(w, "/api/v1/audit-events?limit=0"))
        .send()
        .assert_error(400, "invalid_request");

    // Owners and admins only.
    let member = unique_user("member");
    add_member(w, &team.owner, &team.id, &member, "member");
    Call::get(w, "/api/v1/audit-events")
        .bearer(&token(&member))
        .header("X-Team-ID", &team.id)
        .send()
        .assert_error(403, "forbidden");
    let key = team.key(w, json!({"name": "k", "kind": "secret"}));
    Call::get(w, "/api/v1/audit-events")
        .bearer(&key)
        .send()
        .assert_error(403, "forbidden");
}

#[test]
fn twenty_concurrent_puts_leave_one_consistent_row() {
    let w = worker();
    let _log = w.on_failure();
    let team = Team::new(w);
    let keys: Vec<String> = (0..20)
        .map(|i| format!("comfyui-concurrent-{i:02}-{}", "k".repeat(i * 7)))
        .collect();
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = keys
            .iter()
            .map(|k| {
                let team = &team;
                s.spawn(move || team.put(w, json!({ "api_key": k })).status)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    let row = team.row(w);
    let plaintext = decrypt(&dev_ring(), &team.id, &row);
    assert!(keys.contains(&plaintext));
    assert_eq!(
        row["key_preview"],
        preview(&plaintext),
        "preview and ciphertext from one write"
    );
    assert_eq!(team.get(w).json()["key_preview"], preview(&plaintext));
    assert_eq!(row["version"], 20);
    assert_eq!(team.audit_count(w), 20, "one audit event per write");
}

/// The writer is checked again inside the write itself: a key revoked, or an admin
/// demoted, while the PUT was waiting on the provider gets nothing through. The stub's
/// `stub-slow-` keys hold the provider check for this worker's whole 6 s verification
/// timeout, and the test checks that the revocation really landed inside that wait.
#[test]
fn a_writer_that_loses_its_right_mid_request_writes_nothing() {
    let w = spawn(Options::default().var("COMFY_CLOUD_VERIFY_TIMEOUT_MS", "6000"));
    let w = &w;
    let _log = w.on_failure();
    let team = Team::new(w);
    let (key, key_id) = team.key_and_id(w, json!({"name": "w", "kind": "secret"}));
    // Runs `put` on a thread and `meanwhile` 300 ms later; `meanwhile` must finish before
    // the PUT answers, or the test proves nothing.
    let race = |put: &(dyn Fn() -> Reply + Sync), meanwhile: &dyn Fn()| -> Reply {
        std::thread::scope(|s| {
            let started = std::time::Instant::now();
            let handle = s.spawn(move || (put(), started.elapsed()));
            std::thread::sleep(std::time::Duration::from_millis(300));
            meanwhile();
            let changed_at = started.elapsed();
            let (reply, answered_at) = handle.join().unwrap();
            assert!(
                changed_at < answered_at,
                "the change ({changed_at:?}) landed after the PUT answered ({answered_at:?})"
            );
            reply
        })
    };
    let slow = || {
        let k = format!("stub-slow-{}", unique_user("k").replace('-', "x"));
        plaintexts::watch(&k);
        k
    };
    let audit_before = team.audit_count(w);
    let first = slow();
    let put = race(
        &|| {
            Call::put(w, CREDENTIAL_PATH)
                .bearer(&key)
                .json(&json!({ "api_key": first }))
                .send()
        },
        &|| {
            let revoked = team
                .call(Call::delete(w, &format!("/api/v1/api-keys/{key_id}")))
                .send();
            assert_eq!(revoked.status, 200);
        },
    );
    put.assert_error(401, "unauthorized");
    assert_eq!(team.row(w), Value::Null, "nothing was stored");
    assert_eq!(team.audit_count(w), audit_before, "and nothing audited");

    // An admin demoted to member during a slow PUT: 403, nothing stored.
    let admin = unique_user("admin");
    add_member(w, &team.owner, &team.id, &admin, "admin");
    let second = slow();
    let put = race(
        &|| {
            Call::put(w, CREDENTIAL_PATH)
                .bearer(&token(&admin))
                .header("X-Team-ID", &team.id)
                .json(&json!({ "api_key": second }))
                .send()
        },
        &|| add_member(w, &team.owner, &team.id, &admin, "member"),
    );
    put.assert_error(403, "forbidden");
    assert_eq!(team.row(w), Value::Null);
}

/// A caller this worker has just authenticated PUTs with one D1 round trip (the guarded
/// write alone), by the log line's own count; revocation, demotion, removal and deletion
/// still refuse the very next PUT, with nothing stored or audited; If-Match and the
/// verification event are decided by that one write.
#[test]
fn a_repeat_put_is_one_d1_round_trip_and_still_refused_at_once() {
    let w = worker();
    let _log = w.on_failure();
    let team = Team::new(w);
    let (key, key_id) = team.key_and_id(w, json!({"name": "writer", "kind": "secret"}));
    let put_with = |bearer: &str, team_id: Option<&str>, api_key: &str, if_match: Option<&str>| {
        let body = json!({ "api_key": api_key });
        let mut call = Call::put(w, CREDENTIAL_PATH).bearer(bearer).json(&body);
        if let Some(id) = team_id {
            call = call.header("X-Team-ID", id);
        }
        if let Some(tag) = if_match {
            call = call.header("If-Match", tag);
        }
        call.send()
    };
    let d1_calls = |reply: &Reply| w.log_line_of(reply)["d1_calls"].as_u64().unwrap();
    let actions = || -> Vec<String> {
        w.d1(&format!(
            "SELECT action FROM audit_events WHERE team_id = '{}' AND provider IS NOT NULL ORDER BY id",
            team.id
        ))
        .iter()
        .map(|r| r["action"].as_str().unwrap().to_string())
        .collect()
    };

    // An API key: the first PUT reads the key's row, the next ones only write.
    let first = put_with(&key, None, "comfyui-one-trip-0123456789-a", None);
    assert_eq!(first.status, 200, "{}", first.text);
    let second = put_with(&key, None, "comfyui-one-trip-0123456789-b", None);
    assert_eq!(second.status, 200, "{}", second.text);
    assert_eq!(d1_calls(&second), 1, "{}", w.log_line_of(&second));
    assert_eq!(team.decrypted(w), "comfyui-one-trip-0123456789-b");
    // The verification event, decided by the batch: recorded when the state changes only.
    let unverified = "stub-500-one-trip-0123456789";
    let third = put_with(&key, None, unverified, None);
    assert_eq!(third.json()["verification"]["state"], "unverified");
    assert_eq!(d1_calls(&third), 1);
    let fourth = put_with(&key, None, unverified, None);
    assert_eq!(d1_calls(&fourth), 1);
    assert_eq!(
        actions(),
        [
            "credential.put",
            "credential.put",
            "credential.put",
            "credential.verification.unverified",
            "credential.put"
        ]
    );
    // If-Match, decided by the write: a stale ETag is 412, the current one goes through.
    let etag = fourth.header("etag").unwrap().to_string();
    put_with(&key, None, "comfyui-one-trip-0123456789-c", Some("\"1\""))
        .assert_error(412, "precondition_failed");
    let current = put_with(&key, None, "comfyui-one-trip-0123456789-d", Some(&etag));
    assert_eq!(current.status, 200, "{}", current.text);
    assert_eq!(d1_calls(&current), 1);
    assert_eq!(team.decrypted(w), "comfyui-one-trip-0123456789-d");
    let audited = actions().len();

    // Revoked: the very next PUT gets 401, and nothing is stored or audited.
    let revoked = team
        .call(Call::delete(w, &format!("/api/v1/api-keys/{key_id}")))
        .send();
    assert_eq!(revoked.status, 200);
    put_with(&key, None, "comfyui-one-trip-0123456789-e", None).assert_error(401, "unauthorized");
    assert_eq!(team.decrypted(w), "comfyui-one-trip-0123456789-d");
    assert_eq!(actions().len(), audited);

    // A session: an admin's second PUT is one round trip too.
    let admin = unique_user("admin");
    add_member(w, &team.owner, &team.id, &admin, "admin");
    // A session's PUT of key `comfyui-one-trip-{who}-…-{suffix}`.
    let session_put = |token: &str, who: &str, suffix: &str| {
        let key = format!("comfyui-one-trip-{who}-0123456789-{suffix}");
        put_with(token, Some(&team.id), &key, None)
    };
    let admin_token = token(&admin);
    let as_admin = |suffix: &str| session_put(&admin_token, "admin", suffix);
    assert_eq!(as_admin("a").status, 200);
    let again = as_admin("b");
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(d1_calls(&again), 1);
    // Demoted: 403 at once, nothing stored; promoted again: a remembered refusal never
    // stands in the way.
    add_member(w, &team.owner, &team.id, &admin, "member");
    as_admin("c").assert_error(403, "forbidden");
    assert_eq!(team.decrypted(w), "comfyui-one-trip-admin-0123456789-b");
    add_member(w, &team.owner, &team.id, &admin, "admin");
    assert_eq!(as_admin("d").status, 200);
    // Removed from the team: 403, as a stranger.
    let removed = team
        .call(Call::delete(w, &format!("/api/v1/team/members/{admin}")))
        .send();
    assert_eq!(removed.status, 204, "{}", removed.text);
    let refused = as_admin("e");
    refused.assert_error(403, "forbidden");
    assert_eq!(refused.message(), "You are not a member of this team");
    assert_eq!(team.decrypted(w), "comfyui-one-trip-admin-0123456789-d");

    // The owner, remembered, after deleting the team: its 404, nothing written.
    let owner_token = token(&team.owner);
    let owner_put = |suffix: &str| session_put(&owner_token, "owner", suffix);
    assert_eq!(owner_put("a").status, 200);
    let deleted = team.call(Call::delete(w, "/api/v1/team")).send();
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    let gone = owner_put("b");
    gone.assert_error(404, "not_found");
    assert_eq!(gone.message(), "This team has been deleted");
    assert_eq!(
        team.row(w),
        Value::Null,
        "nothing written after the deletion"
    );
}
