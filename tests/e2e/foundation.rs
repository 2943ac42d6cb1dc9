use crate::support::{new_key, new_team, spawn, token, unique_user, worker, Call, Options};

#[test]
fn healthz_checks_d1_and_says_ok() {
    let w = worker();
    let _log = w.on_failure();
    let r = Call::get(w, "/healthz").send();
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json(), serde_json::json!({"status": "ok", "d1": "ok"}));
    assert_eq!(r.header("content-type"), Some("application/json"));
}

#[test]
fn healthz_is_503_when_d1_has_no_schema() {
    let w = spawn(Options {
        skip_schema: true,
        ..Options::default()
    });
    let _log = w.on_failure();
    let r = Call::get(&w, "/healthz").send();
    r.assert_error(503, "service_unavailable");
    assert!(r.header("retry-after").is_some());
    assert!(
        !r.text.contains("schema_version"),
        "internals leaked: {}",
        r.text
    );
}

#[test]
fn every_response_carries_a_distinct_request_id() {
    let w = worker();
    let _log = w.on_failure();
    let ids: Vec<String> = ["/healthz", "/nope", "/healthz"]
        .iter()
        .map(|p| {
            let r = Call::get(w, p).send();
            r.header("x-request-id").expect("X-Request-ID").to_string()
        })
        .collect();
    for id in &ids {
        assert_eq!(id.len(), 36, "{id}");
        assert_eq!(&id[14..15], "7", "UUIDv7 expected: {id}");
    }
    assert!(ids[0] != ids[1] && ids[1] != ids[2]);
}

#[test]
fn unknown_paths_and_methods_get_the_error_shape() {
    let w = worker();
    let _log = w.on_failure();
    Call::get(w, "/api/v1/nothing-here")
        .send()
        .assert_error(404, "not_found");
    let r = Call::post(w, "/healthz").send();
    r.assert_error(405, "method_not_allowed");
    // HEAD is served wherever GET is, so Allow names it (RFC 9110).
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    assert_eq!(Call::new(w, "HEAD", "/healthz").send().status, 200);
    let r = Call::delete(w, "/api/v1/api-keys").send();
    assert_eq!(r.header("allow"), Some("POST, GET, HEAD"));
}

#[test]
fn each_request_writes_one_structured_log_line() {
    let w = worker();
    let _log = w.on_failure();
    let r = Call::get(w, "/healthz?token=sk-should-not-be-logged").send();
    let id = r.header("x-request-id").unwrap().to_string();
    // wrangler flushes the worker's console asynchronously.
    let mut line = None;
    for _ in 0..50 {
        line = w
            .request_logs()
            .into_iter()
            .find(|l| l["request_id"] == id.as_str());
        if line.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let line = line.expect("no log line for the request");
    assert_eq!(line["method"], "GET");
    assert_eq!(line["route"], "/healthz");
    assert_eq!(line["status"], 200);
    assert!(line["duration_ms"].as_i64().is_some_and(|d| d >= 0));
    for field in ["team_id", "principal_kind", "principal_id"] {
        assert!(line.get(field).is_some(), "missing {field}: {line}");
    }
    assert!(!line.to_string().contains("sk-should-not-be-logged"));
    let count = w
        .request_logs()
        .iter()
        .filter(|l| l["request_id"] == id.as_str())
        .count();
    assert_eq!(count, 1);

    // An authenticated request names its team and principal, and never the credential.
    let owner = unique_user("logged");
    let team = new_team(w, &owner);
    let created = new_key(
        w,
        &owner,
        &team,
        serde_json::json!({"name": "k", "kind": "device"}),
    );
    let key = created["key"].as_str().unwrap();
    let session = token(&owner);
    for (bearer, kind, principal) in [
        (key, "device_key", created["id"].as_str().unwrap()),
        (session.as_str(), "user", owner.as_str()),
    ] {
        let r = Call::get(w, "/api/v1/cloud-providers")
            .bearer(bearer)
            .header("X-Team-ID", &team)
            .send();
        assert_eq!(r.status, 200, "{}", r.text);
        let line = w.log_line_of(&r);
        assert_eq!(line["route"], "/api/v1/cloud-providers");
        assert_eq!(line["team_id"], team.as_str(), "{line}");
        assert_eq!(line["principal_kind"], kind, "{line}");
        assert_eq!(line["principal_id"], principal, "{line}");
        assert!(
            !line.to_string().contains(bearer),
            "the bearer is logged: {line}"
        );
    }
}

#[test]
fn production_refuses_the_api_with_dev_secrets() {
    let path = "/api/v1/cloud-providers/comfy-cloud";
    let dev = worker();
    let _log = dev.on_failure();
    assert_ne!(Call::get(dev, path).send().status, 503);

    let prod = spawn(Options::default().var("ENVIRONMENT", "production"));
    let _prod_log = prod.on_failure();
    let r = Call::get(&prod, path).send();
    r.assert_error(503, "service_unavailable");
    assert!(!r.text.contains("insecure-dev"), "{}", r.text);
    // Health stays observable, so the operator sees a running but refusing worker.
    assert_eq!(Call::get(&prod, "/healthz").send().status, 200);
}

/// `/openapi.json` comes from the static assets (not the wasm), exactly as build.rs
/// converted `openapi.yaml`, to anyone, with its media type and cache lifetime.
#[test]
fn the_api_description_is_served_from_the_assets_as_built() {
    let w = worker();
    let _log = w.on_failure();
    let r = Call::get(w, "/openapi.json").send();
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{:?}",
        r.header("content-type")
    );
    assert_eq!(r.header("cache-control"), Some("public, max-age=300"));
    assert_eq!(r.text, edge_credentials::core::routes::OPENAPI_JSON);
    let head = Call::new(w, "HEAD", "/openapi.json").send();
    assert_eq!(head.status, 200);
    assert!(head.text.is_empty());
}
