//! The proxy through the real worker, with the provider stub as the upstream. Every test
//! reads what the stub received: the stored key as Bearer and nothing of the caller's.

use crate::support::*;
use serde_json::{json, Value};
use std::{
    io::{Read, Write},
    net::TcpStream,
    process::Command,
    time::{Duration, Instant},
};

const MOUNT: &str = "/api/v1/cloud-providers/comfy-cloud/proxy";

/// A team with a stored ComfyUI Cloud key and a secret key that may use it.
struct Ready {
    team: Team,
    provider_key: String,
    sk: String,
}

fn ready(w: &Worker) -> Ready {
    let team = Team::new(w);
    let provider_key = format!("comfyui-proxy-{}", unique_user("k").replace('-', "x"));
    let r = team.put(w, json!({ "api_key": provider_key }));
    assert_eq!(r.status, 200, "{}", r.text);
    let sk = team.key(
        w,
        json!({"name": "integration", "kind": "secret", "scopes": ["cloud_providers:use"]}),
    );
    Ready {
        team,
        provider_key,
        sk,
    }
}

/// A marker for one test's requests, carried in the query so the stub's records can be
/// found whatever happens to the path.
fn marker() -> String {
    unique_user("m").replace('-', "")
}

/// Sends exactly these bytes as the request target, with no client-side normalisation,
/// and reads the response up to its declared length. One retry on an empty answer.
fn raw_get(w: &Worker, target: &str, authorization: &str) -> (u16, String) {
    for _ in 0..2 {
        let response = raw_exchange(w, target, authorization);
        let status = response
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        if status != 0 {
            return (status, response);
        }
    }
    (0, String::new())
}

fn raw_exchange(w: &Worker, target: &str, authorization: &str) -> String {
    let addr = w.base_url.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {authorization}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
        }
        let text = String::from_utf8_lossy(&response);
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())
                        .flatten()
                })
                .unwrap_or(0);
            let chunked = text[..end]
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked");
            let complete = if chunked {
                text.ends_with("0\r\n\r\n")
            } else {
                response.len() >= end + 4 + length
            };
            if complete {
                break;
            }
        }
    }
    String::from_utf8_lossy(&response).to_string()
}

#[test]
fn the_stored_key_arrives_as_bearer_and_the_callers_credentials_never_do() {
    let w = worker();
    let _log = w.on_failure();
    let r = ready(w);
    let m = marker();
    let reply = Call::get(w, &format!("{MOUNT}/api/v2/echo/headers?m={m}&page=2"))
        .bearer(&r.sk)
        .header("Cookie", "session=caller-cookie")
        .header("X-Team-ID", "00000000-0000-4000-8000-000000000000")
        .header("CF-Connecting-IP", "203.0.113.9")
        .header("CF-Ray", "caller-ray")
        .header("cf-access-jwt-assertion", "caller-jwt")
        .header("X-Forwarded-For", "198.51.100.7")
        .header("X-Forwarded-Host", "evil.example")
        .header("Forwarded", "for=198.51.100.7")
        .header("X-Custom-Secret", "caller-custom")
        .header("Proxy-Authorization", "Basic Y2FsbGVy")
        .header("Accept", "application/json")
        .header("Idempotency-Key", "idem-1")
        .header("If-None-Match", "\"v1\"")
        .header("Range", "bytes=0-10")
        .header("Last-Event-ID", "42")
        .header("User-Agent", "comfy-test/1.0")
        .send();
    assert_eq!(reply.status, 200, "{}", reply.text);

    let seen = stub().the_request_with(&m);
    let headers = seen["headers"].as_object().unwrap();
    assert_eq!(
        headers["authorization"],
        format!("Bearer {}", r.provider_key)
    );
    for (name, value) in [
        ("accept", "application/json"),
        ("idempotency-key", "idem-1"),
        ("if-none-match", "\"v1\""),
        ("range", "bytes=0-10"),
        ("last-event-id", "42"),
        ("user-agent", "comfy-test/1.0"),
    ] {
        assert_eq!(headers[name], value, "{name} is forwarded");
    }
    // Nothing else of the caller's arrives. The runtime itself adds `cf-worker` to every
    // subrequest (the calling zone, not a caller value); no other header is expected.
    let allowed = [
        "authorization",
        "accept",
        "idempotency-key",
        "if-none-match",
        "range",
        "last-event-id",
        "user-agent",
        "host",
        "cf-worker",
        "accept-encoding",
        "content-length",
        "connection",
    ];
    for name in headers.keys() {
        assert!(
            allowed.contains(&name.as_str()),
            "{name} reached the provider: {seen}"
        );
    }
    let text = seen.to_string();
    for leaked in [
        "caller-cookie",
        "203.0.113.9",
        "caller-ray",
        "caller-jwt",
        "198.51.100.7",
        "evil.example",
        "caller-custom",
        "Y2FsbGVy",
        &r.sk,
        "00000000-0000-4000-8000-000000000000",
    ] {
        assert!(!text.contains(leaked), "{leaked} reached the provider");
    }
    assert_eq!(
        seen["query"],
        format!("?m={m}&page=2"),
        "the query passes as sent"
    );
    assert_eq!(seen["path"], "/api/v2/echo/headers");

    // The response: relayed, marked as relayed, with only allowlisted headers.
    assert_eq!(
        reply.header("proxy-status"),
        Some("edge-credentials; received-status=200")
    );
    assert!(reply.header("x-request-id").is_some());
    assert_eq!(reply.header("etag"), Some("\"echo-1\""));
    assert_eq!(reply.header("x-ratelimit-remaining"), Some("599"));
    for hidden in ["set-cookie", "x-stub-internal", "server"] {
        assert!(
            reply.header(hidden).is_none_or(|v| !v.contains("stub")),
            "{hidden} came back: {:?}",
            reply.header(hidden)
        );
    }
}

#[test]
fn a_jwt_member_of_any_role_may_call_it_and_the_jwt_stays_here() {
    let w = worker();
    let _log = w.on_failure();
    let r = ready(w);
    let member = unique_user("member");
    add_member(w, &r.team.owner, &r.team.id, &member, "member");
    let jwt = token(&member);
    let m = marker();
    let reply = Call::get(w, &format!("{MOUNT}/developer/api/v1/echo?m={m}"))
        .bearer(&jwt)
        .header("X-Team-ID", &r.team.id)
        .send();
    assert_eq!(reply.status, 200, "{}", reply.text);
    let seen = stub().the_request_with(&m);
    assert_eq!(
        seen["headers"]["authorization"],
        format!("Bearer {}", r.provider_key)
    );
    assert!(!seen.to_string().contains(&jwt));
}

#[test]
fn who_may_call_it_devices_and_keys_without_the_use_scope_never() {
    let w = worker();
    let _log = w.on_failure();
    let r = ready(w);
    let m = marker();
    let device = r.team.key(w, json!({"name": "gpu", "kind": "device"}));
    let plain = r.team.key(w, json!({"name": "rw", "kind": "secret"}));
    let path = format!("{MOUNT}/api/v2/echo/denied?m={m}");
    Call::get(w, &path)
        .bearer(&device)
        .send()
        .assert_error(403, "forbidden");
    let e = Call::get(w, &path).bearer(&plain).send();
    e.assert_error(403, "forbidden");
    assert!(
        e.message().contains("cloud_providers:use"),
        "{}",
        e.message()
    );
    Call::get(w, &path).send().assert_error(401, "unauthorized");
    assert!(stub().requests_with(&m).is_empty(), "nothing was sent");
}

#[test]
fn no_active_key_is_409_and_one_team_never_reaches_anothers_key() {
    let w = worker();
    let _log = w.on_failure();
    let a = ready(w);
    let b = ready(w);
    let m = marker();
    let reply = Call::get(w, &format!("{MOUNT}/api/v2/echo/b?m={m}"))
        .bearer(&b.sk)
        .header("X-Team-ID", &a.team.id) // ignored: the key carries its team
        .send();
    assert_eq!(reply.status, 200);
    let seen = stub().the_request_with(&m);
    assert_eq!(
        seen["headers"]["authorization"],
        format!("Bearer {}", b.provider_key)
    );

    // A JWT of team A's owner naming team B is refused before anything is sent.
    let m2 = marker();
    Call::get(w, &format!("{MOUNT}/api/v2/echo/x?m={m2}"))
        .bearer(&token(&a.team.owner))
        .header("X-Team-ID", &b.team.id)
        .send()
        .assert_error(403, "forbidden");

    // Revoked: 409, and nothing reaches the provider.
    assert_eq!(
        a.team.call(Call::delete(w, CREDENTIAL_PATH)).send().status,
        200
    );
    let m3 = marker();
    let e = Call::get(w, &format!("{MOUNT}/api/v2/echo/a?m={m3}"))
        .bearer(&a.sk)
        .send();
    e.assert_error(409, "conflict");
    assert!(e.header("proxy-status").is_none(), "our own error");
    // Never configured: 409 too.
    let fresh = Team::new(w);
    fresh
        .call(Call::get(w, &format!("{MOUNT}/api/v2/echo/none?m={m3}")))
        .send()
        .assert_error(409, "conflict");
    assert!(stub().requests_with(&m2).is_empty() && stub().requests_with(&m3).is_empty());
}

#[test]
fn every_path_trick_is_refused_before_the_stub_sees_a_request() {
    let w = worker();
    let _log = w.on_failure();
    let r = ready(w);
    let auth = format!("Bearer {}", r.sk);
    let m = marker();
    // Refused by the worker's own rules: 400, in the contract's shape.
    for trick in [
        "/api/v2/jobs%2f..%2fadmin",
        "/api/v2/jobs%2Fx",
        "/api/v2/jobs%5cx",
        "/api/v2//jobs",
        "/api/v2/user@evil.example/x",
        "/api/v2/%40evil.example",
        "/api/v2/%00",
        "/api/v2/jobs%0d%0aX-Injected:%201",
        "/http:%2f%2fevil.example/api/v2/",
        "//evil.example/api/v2/jobs",
        "/api/v2/%252e%252e/admin",
        "",
    ] {
        let target = format!("{MOUNT}{trick}?m={m}");
        let (status, text) = raw_get(w, &target, &auth);
        assert_eq!(status, 400, "{trick}: {text}");
        assert!(text.contains("\"invalid_request\""), "{trick}: {text}");
    }
    // The platform resolves dot segments, raw or %2e-encoded, before the worker runs (WHATWG
    // URL parsing); what is left must still be under a provider prefix, or it is a 404 that
    // names them. Either way nothing outside the prefixes is ever sent.
    for trick in [
        "/api/v2/../../../healthz",
        "/api/v2/%2e%2e/%2e%2e/x",
        "/developer/api/v1/../../admin",
        "/api/v2/./../internal",
    ] {
        let target = format!("{MOUNT}{trick}?m={m}");
        let (status, text) = raw_get(w, &target, &auth);
        assert!(matches!(status, 400 | 404), "{trick}: {text}");
    }
    // Outside the provider's prefixes: 404, naming them. On the host mount as well.
    for path in [
        "/healthz",
        "/api/v1/teams",
        "/admin",
        "/api/v20/x",
        "/developer/api/v2/x",
    ] {
        let e = Call::get(w, &format!("{}{path}?m={m}", w.proxy_url))
            .bearer(&r.sk)
            .send();
        e.assert_error(404, "not_found");
        assert!(
            e.message().contains("/developer/api/v1/, /api/v2/"),
            "{}",
            e.message()
        );
    }
    assert!(
        stub().requests_with(&m).is_empty(),
        "{:?}",
        stub().requests_with(&m)
    );
}

#[test]
fn a_redirect_comes_back_unfollowed_with_its_location() {
    let w = worker();
    let _log = w.on_failure();
    let r = ready(w);
    let m = marker();
    let reply = Call::get(
        w,
        &format!("{}/api/v2/assets/a1/content?m={m}", w.proxy_url),
    )
    .bearer(&r.sk)
    .send();
    assert_eq!(reply.status, 302, "{}", reply.text);
    let location = reply.header("location").expect("Location on a 3xx");
    assert!(location.starts_with(&format!("{}/__stub/signed/content?", stub().base_url)));
    assert!(reply.header("set-cookie").is_none());
    assert_eq!(
        reply.header("proxy-status"),
        Some("edge-credentials; received-status=302")
    );
    // The stub saw the call, and nobody went to the signed URL with or without the key.
    let seen = stub().requests_with(&m);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["path"], "/api/v2/assets/a1/content");
}

#[test]
fn upstream_statuses_pass_through_and_our_failures_are_ours() {
    let w = worker();
    let _log = w.on_failure();
    let r = ready(w);
    let get = |path: &str| Call::get(w, &format!("{MOUNT}{path}")).bearer(&r.sk).send();

    let limited = get("/api/v2/ratelimited");
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("retry-after"), Some("7"));
    assert_eq!(
        limited.header("proxy-status"),
        Some("edge-credentials; received-status=429")
    );
    assert_eq!(
        limited.json()["error"]["message"],
        "Too many requests",
        "the provider's body"
    );

    let failed = get("/api/v2/fail");
    assert_eq!(failed.status, 503);
    assert_eq!(
        failed.header("proxy-status"),
        Some("edge-credentials; received-status=503")
    );
    assert_eq!(failed.json()["error"]["message"], "stub says 503");
    // Nothing is retried.
    let fails = stub()
        .requests()
        .into_iter()
        .filter(|q| {
            q["path"] == "/api/v2/fail"
                && q["headers"]["authorization"] == format!("Bearer {}", r.provider_key)
        })
        .count();
    assert_eq!(fails, 1);

    // No response headers within COMFY_CLOUD_TIMEOUT_MS (3 s in tests): our 504.
    let started = Instant::now();
    let slow = get("/api/v2/slow");
    slow.assert_error(504, "gateway_timeout");
    assert!(slow.header("proxy-status").is_none());
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_provider_that_cannot_be_reached_is_502() {
    let dead = format!("http://127.0.0.1:{}", free_port());
    let w = spawn(Options::default().var("COMFY_CLOUD_ORIGIN", &dead));
    let _log = w.on_failure();
    let r = ready(&w);
    let e = Call::get(&w, &format!("{MOUNT}/api/v2/jobs"))
        .bearer(&r.sk)
        .send();
    e.assert_error(502, "bad_gateway");
    assert!(e.header("proxy-status").is_none());
    assert!(!e.text.contains("127.0.0.1"), "no internals in the message");
}

#[test]
fn an_upstream_401_marks_the_key_rejected_and_is_not_the_callers_failure() {
    let w = worker();
    let _log = w.on_failure();
    let r = ready(w);
    stub().forget(&r.provider_key);
    let reply = Call::get(w, &format!("{MOUNT}/api/v2/jobs"))
        .bearer(&r.sk)
        .send();
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.header("proxy-status"),
        Some("edge-credentials; received-status=401")
    );
    assert_eq!(
        reply.json()["error"]["message"],
        "Invalid or expired API key"
    );
    let credential = r.team.get(w).json();
    assert_eq!(credential["verification"]["state"], "rejected");
    assert_eq!(
        credential["verification"]["reason"],
        "provider_rejected_on_use"
    );
    assert!(credential["last_used_at"].is_string());
    assert_eq!(
        credential["credential_status"], "active",
        "the key stays stored"
    );
    let audit = r
        .team
        .call(Call::get(w, "/api/v1/audit-events"))
        .send()
        .json();
    assert_eq!(
        audit["audit_events"][0]["action"],
        "credential.verification.rejected"
    );
    // The caller's own credential still works: the relayed 401 was the provider's.
    assert_eq!(
        Call::get(w, CREDENTIAL_PATH)
            .bearer(&r.team.key(w, json!({"name": "r", "kind": "secret"})))
            .send()
            .status,
        200
    );
    // A second 401 in the same minute writes nothing more.
    let events = r.team.audit_count(w);
    let again = Call::get(w, &format!("{MOUNT}/api/v2/jobs"))
        .bearer(&r.sk)
        .send();
    assert_eq!(again.status, 401);
    assert_eq!(r.team.audit_count(w), events);
}

#[test]
fn last_used_at_is_written_at_most_once_a_minute() {
    let w = worker();
    let _log = w.on_failure();
    let r = ready(w);
    assert_eq!(r.team.get(w).json()["last_used_at"], Value::Null);
    let call = || {
        Call::get(w, &format!("{MOUNT}/api/v2/jobs"))
            .bearer(&r.sk)
            .send()
    };
    assert_eq!(call().status, 200);
    let first = r.team.row(w)["last_used_at"].as_i64().expect("written");
    let etag = r.team.get(w).header("etag").unwrap().to_string();
    assert_eq!(call().status, 200);
    assert_eq!(
        r.team.row(w)["last_used_at"].as_i64(),
        Some(first),
        "not again within the minute"
    );
    assert_eq!(
        r.team.get(w).header("etag").unwrap(),
        etag,
        "use does not move the ETag"
    );
}

#[test]
fn server_sent_events_and_multipart_uploads_pass_through() {
    let w = worker();
    let _log = w.on_failure();
    let r = ready(w);
    let events = Call::get(w, &format!("{}/api/v2/jobs/j1/events", w.proxy_url))
        .bearer(&r.sk)
        .header("Accept", "text/event-stream")
        .send();
    assert_eq!(events.status, 200);
    assert_eq!(events.header("content-type"), Some("text/event-stream"));
    assert_eq!(events.text.matches("event: progress").count(), 2);
    assert!(events
        .text
        .contains("event: status\ndata: {\"status\":\"succeeded\"}"));

    let m = marker();
    let boundary = "----comfy-boundary-7MA4YWxkTrZu0gW";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"photo.png\"\r\n\
         Content-Type: image/png\r\n\r\n\u{89}PNG\r\n\u{1a}\n-binary-\r\n--{boundary}--\r\n"
    );
    let reply = Call::post(w, &format!("{MOUNT}/api/v2/echo/upload?m={m}"))
        .bearer(&r.sk)
        .header(
            "Content-Type",
            &format!("multipart/form-data; boundary={boundary}"),
        )
        .raw_body(body.clone().into_bytes())
        .send();
    assert_eq!(reply.status, 200, "{}", reply.text);
    let seen = stub().the_request_with(&m);
    assert_eq!(
        seen["headers"]["content-type"],
        format!("multipart/form-data; boundary={boundary}")
    );
    assert_eq!(seen["body_bytes"], body.len());
    let sent_sha = sha256_hex(body.as_bytes());
    assert_eq!(seen["body_sha256"], sent_sha, "byte for byte");
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn the_team_limit_guards_the_providers_budget() {
    let w = spawn(Options::default().var("RATE_LIMIT_PROVIDER_REQUESTS", "3"));
    let _log = w.on_failure();
    let r = ready(&w);
    let m = marker();
    let statuses: Vec<u16> = (0..4)
        .map(|_| {
            Call::get(&w, &format!("{MOUNT}/api/v2/echo/budget?m={m}"))
                .bearer(&r.sk)
                .send()
                .status
        })
        .collect();
    assert_eq!(statuses, [200, 200, 200, 429]);
    let last = Call::get(&w, &format!("{MOUNT}/api/v2/echo/budget?m={m}"))
        .bearer(&r.sk)
        .send();
    last.assert_error(429, "rate_limited");
    assert!(
        last.header("proxy-status").is_none(),
        "our 429, not the provider's"
    );
    assert!(last.header("retry-after").is_some());
    assert_eq!(
        stub().requests_with(&m).len(),
        3,
        "the fourth was never sent"
    );
}

#[test]
fn the_log_line_has_the_mount_status_and_bytes_and_never_the_query() {
    let w = worker();
    let _log = w.on_failure();
    let r = ready(w);
    let m = marker();
    let reply = Call::post(
        w,
        &format!("{MOUNT}/api/v2/echo/log?m={m}&token=query-secret"),
    )
    .bearer(&r.sk)
    .header("Content-Type", "application/json")
    .raw_body(b"{\"hello\":\"world\"}".to_vec())
    .send();
    assert_eq!(reply.status, 200);
    let line = w.log_line_of(&reply);
    assert_eq!(
        line["route"],
        "/api/v1/cloud-providers/comfy-cloud/proxy/{path}"
    );
    assert_eq!(line["proxy"]["mount"], "path");
    assert_eq!(line["proxy"]["upstream_status"], 200);
    assert_eq!(line["proxy"]["bytes_in"], 17);
    assert_eq!(line["principal_kind"], "secret_key");
    let text = line.to_string();
    assert!(
        !text.contains("query-secret") && !text.contains(&m),
        "{text}"
    );
    let host = Call::get(w, &format!("{}/api/v2/jobs", w.proxy_url))
        .bearer(&r.sk)
        .send();
    assert_eq!(w.log_line_of(&host)["proxy"]["mount"], "host");
}

#[test]
fn comfy_sdk_runs_unchanged_through_the_host_mount() {
    let w = worker();
    let _log = w.on_failure();
    let r = ready(w);
    let python = format!("{ROOT}/.venv/bin/python");
    assert!(
        std::path::Path::new(&python).exists(),
        "comfy-sdk is not installed: run ./scripts/setup.sh"
    );
    let before = stub().requests().len();
    let out = Command::new(python)
        .arg(format!("{ROOT}/tests/e2e/sdk/comfy_sdk_story.py"))
        .env("COMFY_BASE_URL", &w.proxy_url)
        .env("COMFY_API_KEY", &r.sk)
        .output()
        .expect("run comfy-sdk");
    assert!(
        out.status.success(),
        "comfy-sdk failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let story: Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(
        story["jobs"],
        json!(["7f3d2c1b-9a8e-4d6f-b012-3c4d5e6f7a8b"])
    );
    assert_eq!(story["status"], "succeeded");
    assert_eq!(
        story["self_link"],
        "/api/v2/jobs/7f3d2c1b-9a8e-4d6f-b012-3c4d5e6f7a8b"
    );
    assert_eq!(
        story["events"],
        json!(["Progress", "Progress", "StatusChange"])
    );
    // What the stub saw of it: the job list, the job twice (by id, then by its server link)
    // and the event stream, each with the team's stored key and never the sk- key.
    let ours: Vec<Value> = stub().requests()[before..]
        .iter()
        .filter(|q| q["headers"]["authorization"] == format!("Bearer {}", r.provider_key))
        .cloned()
        .collect();
    let paths: Vec<&str> = ours.iter().map(|q| q["path"].as_str().unwrap()).collect();
    assert!(paths.contains(&"/api/v2/jobs"), "{paths:?}");
    assert!(
        paths.contains(&"/api/v2/jobs/7f3d2c1b-9a8e-4d6f-b012-3c4d5e6f7a8b/events"),
        "{paths:?}"
    );
    assert!(
        paths
            .iter()
            .filter(|p| **p == "/api/v2/jobs/7f3d2c1b-9a8e-4d6f-b012-3c4d5e6f7a8b")
            .count()
            >= 2
    );
    assert!(!stub()
        .requests()
        .to_vec()
        .iter()
        .any(|q| q.to_string().contains(&r.sk)));
}
