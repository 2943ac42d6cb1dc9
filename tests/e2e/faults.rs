//! Faults: D1 failing mid-write, a restart, broken configuration, hostile bodies, and a
//! canary key that must never leave the worker.

use crate::support::*;
use edge_credentials::core::credentials::preview;
use serde_json::{json, Value};
use std::{
    io::{Read, Write},
    net::TcpStream,
    sync::Mutex,
    time::Duration,
};

fn assert_no_internals(r: &Reply) {
    let text = r.text.to_ascii_lowercase();
    for word in ["sqlite", "constraint", "d1:", "null", "panic"] {
        assert!(!text.contains(word), "internal detail in {}", r.text);
    }
}

#[test]
fn a_d1_failure_during_a_write_commits_nothing_and_a_retry_succeeds() {
    let w = worker();
    let _log = w.on_failure();
    let team = Team::new(w);
    let before = "comfyui-fault-before-0123456789";
    let after = "comfyui-fault-after-9876543210";
    assert_eq!(team.put(w, json!({ "api_key": before })).status, 200);
    let row_before = team.row(w);
    assert_eq!(team.audit_count(w), 1);

    // Each kind of change, with the hook: the batch fails after its statements ran.
    let failing = |call: Call| {
        let r = team.call(call).header("X-Test-Fail-D1", "1").send();
        r.assert_error(503, "service_unavailable");
        assert_no_internals(&r);
        r
    };
    failing(
        Call::put(w, CREDENTIAL_PATH).json(&json!({ "api_key": after, "cloud_fallback": true })),
    );
    failing(Call::patch(w, CREDENTIAL_PATH).json(&json!({ "cloud_fallback": true })));
    let refused = failing(Call::delete(w, CREDENTIAL_PATH));

    assert_eq!(team.row(w), row_before, "the row is exactly as before");
    assert_eq!(team.decrypted(w), before);
    assert_eq!(team.audit_count(w), 1, "no audit event without its change");
    // The cause is in the log, not in the response.
    let line = w.log_line_of(&refused);
    assert_eq!(line["status"], 503);
    assert!(line["error"].as_str().unwrap().contains("d1"), "{line}");

    // The same write, retried without the fault, succeeds and is audited once.
    let retried = team
        .call(Call::put(w, CREDENTIAL_PATH))
        .json(&json!({ "api_key": after, "cloud_fallback": true }))
        .send();
    assert_eq!(retried.status, 200, "{}", retried.text);
    assert_eq!(retried.json()["cloud_fallback"], true);
    assert_eq!(team.decrypted(w), after);
    assert_eq!(team.row(w)["version"], 2);
    assert_eq!(team.audit_count(w), 2);
}

#[test]
fn a_worker_killed_mid_write_loses_no_committed_credential() {
    let first = spawn(Options::default());
    let team = Team::new(&first);
    let key = |i: usize| format!("comfyui-crash-{i:04}-{}", team.id);
    // Keep writing until the worker is killed; remember the last write it acknowledged.
    let acked: Mutex<Option<usize>> = Mutex::new(None);
    let written = |i: usize| {
        team.call(Call::put(&first, CREDENTIAL_PATH))
            .json(&json!({ "api_key": key(i) }))
            .try_send()
            .is_ok_and(|r| r.status == 200)
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0.. {
                if !written(i) {
                    break;
                }
                *acked.lock().unwrap() = Some(i);
            }
        });
        while acked.lock().unwrap().is_none_or(|i| i < 10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        first.crash();
    });
    let last = acked.into_inner().unwrap().unwrap();

    let second = spawn(Options {
        state_dir: Some(first.state_dir.clone()),
        ..Options::default()
    });
    let _log = second.on_failure();
    // The write in flight at the kill may or may not have committed; nothing older is lost.
    let stored = team.decrypted(&second);
    assert!(
        stored == key(last) || stored == key(last + 1),
        "acknowledged {:?}, found {stored:?}",
        key(last)
    );
    let r = team.call(Call::get(&second, CREDENTIAL_PATH)).send();
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["key_preview"], preview(&stored));
    assert_eq!(r.json()["credential_status"], "active");
}

#[test]
fn malformed_credential_keys_are_a_clear_error_not_a_crash() {
    for (label, value) in [
        ("not JSON", "{not json"),
        (
            "active key missing",
            r#"{"active":"k9","keys":{"k1":"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="}}"#,
        ),
    ] {
        let w = spawn(Options::default().var("CREDENTIAL_KEYS", value));
        let _log = w.on_failure();
        let owner = unique_user("owner");
        let r = Call::post(&w, "/api/v1/teams")
            .bearer(&token(&owner))
            .json(&json!({"name": "t"}))
            .send();
        r.assert_error(503, "service_unavailable");
        assert_eq!(r.message(), "The service is misconfigured", "{label}");
        let id = r.header("x-request-id").unwrap().to_string();
        assert!(w.log_eventually_contains(&id), "{label}");
        let line = w
            .request_logs()
            .into_iter()
            .find(|l| l["request_id"] == id.as_str())
            .unwrap();
        assert!(
            line["error"].as_str().unwrap().contains("CREDENTIAL_KEYS"),
            "{label}: the log names the variable: {line}"
        );
        let log = w.log();
        assert!(
            !log.contains("panicked") && !log.contains("RuntimeError"),
            "{label}: {log}"
        );
    }
}

#[test]
fn hostile_bodies_are_refused_cleanly_and_store_nothing() {
    let w = worker();
    let _log = w.on_failure();
    let team = Team::new(w);
    let send = |body: Vec<u8>| {
        team.call(Call::put(w, CREDENTIAL_PATH))
            .header("Content-Type", "application/json")
            .raw_body(body)
            .send()
    };
    let nested = |depth: usize| {
        format!(
            r#"{{"api_key": "comfyui-nested", "cloud_fallback": {}true{}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        )
        .into_bytes()
    };
    // Deep enough to exhaust a naive recursive parser, small enough to pass the size limit.
    send(nested(5_000)).assert_error(400, "invalid_request");
    send(nested(100_000)).assert_error(413, "payload_too_large");
    send(b"{\"api_key\": \"comfyui-\xff\xfe-invalid-utf8\"}".to_vec())
        .assert_error(400, "invalid_request");
    let r = send(br#"{"api_key": "comfyui-first-of-two", "api_key": "comfyui-second"}"#.to_vec());
    r.assert_error(400, "invalid_request");
    assert_eq!(r.message(), "Request body repeats a field");
    send(br#"{"api_key": "comfyui-x", "cloud_fallback": false, "cloud_fallback": true}"#.to_vec())
        .assert_error(400, "invalid_request");
    send(Vec::new()).assert_error(400, "invalid_request");
    send(b"\xef\xbb\xbf{\"api_key\": \"comfyui-bom\"}".to_vec())
        .assert_error(400, "invalid_request");
    // The other bodies go through the same parser.
    Call::post(w, "/api/v1/teams")
        .bearer(&token(&team.owner))
        .header("Content-Type", "application/json")
        .raw_body(br#"{"name": "a", "name": "b"}"#.to_vec())
        .send()
        .assert_error(400, "invalid_request");
    team.call(Call::post(w, "/api/v1/api-keys"))
        .header("Content-Type", "application/json")
        .raw_body(nested(5_000))
        .send()
        .assert_error(400, "invalid_request");

    team.call(Call::get(w, CREDENTIAL_PATH))
        .send()
        .assert_error(404, "not_found");
    assert_eq!(team.row(w), Value::Null, "nothing was stored");
}

/// A body sent without `Content-Length` is refused as soon as it passes 16 KiB: the worker
/// answers while the client is still sending, so it never buffers a body of any size.
#[test]
fn an_unfinished_chunked_body_is_refused_once_past_the_limit() {
    // A worker of its own: after an answer that leaves a streamed body unread, wrangler
    // dev's local proxy has failed the next request it forwarded ("Your worker restarted
    // mid-request"), which would hit whichever test shares the worker. Production has no
    // such proxy.
    let own = spawn(Options::default());
    let w = &own;
    let _log = w.on_failure();
    let team = Team::new(w);
    let addr = w.url("").trim_start_matches("http://").to_string();
    let mut socket = TcpStream::connect(&addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let head = format!(
        "PUT {CREDENTIAL_PATH} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         X-Team-ID: {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        token(&team.owner),
        team.id
    );
    let chunk = format!(r#"{{"api_key": "{}"#, "a".repeat(20_000));
    socket.write_all(head.as_bytes()).unwrap();
    write!(socket, "{:x}\r\n{chunk}\r\n", chunk.len()).unwrap();
    // No last chunk: the body stays open while we wait for the answer.
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&reply).contains("payload_too_large") {
        match socket.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            Err(e) => panic!("no answer while the body was still open: {e}"),
        }
    }
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 413 "), "{reply}");
    assert_eq!(team.row(w), Value::Null, "nothing was stored");
}

/// The canary goes through every path that touches a stored key, the failing ones too.
/// Each reply is checked by the harness; the log is checked here, and `scripts/test.sh`
/// scans every worker log and the whole test output for it after the run.
#[test]
fn a_canary_key_never_appears_in_a_response_or_the_log() {
    let w = worker();
    let _log = w.on_failure();
    let canary = format!("comfyui-CANARY-{}", unique_user("k"));
    let team = Team::new(w);
    let body = |extra: Value| {
        let mut b = json!({ "api_key": canary });
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };
    let put = |path: &str, extra: Value| team.call(Call::put(w, path)).json(&body(extra)).send();
    assert_eq!(put(CREDENTIAL_PATH, json!({})).status, 200);
    put(CREDENTIAL_PATH, json!({"team_id": team.id})).assert_error(400, "invalid_request");
    put(CREDENTIAL_PATH, json!({"cloud_fallback": "yes"})).assert_error(400, "invalid_request");
    put(CREDENTIAL_PATH, json!({"api_key_copy": canary})).assert_error(400, "invalid_request");
    put("/api/v1/cloud-providers/other-cloud", json!({})).assert_error(404, "not_found");
    team.call(Call::put(w, CREDENTIAL_PATH))
        .header("If-Match", "\"stale\"")
        .json(&body(json!({})))
        .send()
        .assert_error(412, "precondition_failed");
    team.call(Call::put(w, CREDENTIAL_PATH))
        .header("X-Test-Fail-D1", "1")
        .json(&body(json!({})))
        .send()
        .assert_error(503, "service_unavailable");
    let unauthenticated = Call::put(w, CREDENTIAL_PATH).json(&body(json!({}))).send();
    unauthenticated.assert_error(401, "unauthorized");
    let reader = new_key(
        w,
        &team.owner,
        &team.id,
        json!({"name": "d", "kind": "device"}),
    );
    Call::put(w, CREDENTIAL_PATH)
        .bearer(reader["key"].as_str().unwrap())
        .json(&body(json!({})))
        .send()
        .assert_error(403, "forbidden");
    for path in [
        CREDENTIAL_PATH,
        "/api/v1/cloud-providers",
        "/api/v1/audit-events",
    ] {
        assert_eq!(team.call(Call::get(w, path)).send().status, 200);
    }
    let patched = team
        .call(Call::patch(w, CREDENTIAL_PATH))
        .json(&json!({"cloud_fallback": true}))
        .send();
    assert_eq!(patched.status, 200);
    assert_eq!(team.decrypted(w), canary, "the canary really was stored");
    w.run_cron();
    let last = team.call(Call::delete(w, CREDENTIAL_PATH)).send();
    assert_eq!(last.status, 200);

    let id = last.header("x-request-id").unwrap().to_string();
    assert!(w.log_eventually_contains(&id));
    plaintexts::assert_absent("the worker log", &w.log());
}
