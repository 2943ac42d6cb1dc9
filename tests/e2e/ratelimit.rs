//! The rate limits of seeds 002 and 003, enforced by real Durable Objects.

use crate::support::*;
use serde_json::json;
use std::time::{Duration, Instant};

/// A worker with the contract's IP limit (40 per 10 s, 10 s cooldown).
fn ip_limited() -> Worker {
    spawn(
        Options::default()
            .var("RATE_LIMIT_IP_REQUESTS", "40")
            .var("RATE_LIMIT_IP_WINDOW_MS", "10000")
            .var("RATE_LIMIT_IP_COOLDOWN_MS", "10000"),
    )
}

fn from(w: &Worker, ip: &str, path: &str) -> Reply {
    Call::get(w, path).header("CF-Connecting-IP", ip).send()
}

#[test]
fn one_hundred_concurrent_requests_from_one_ip_let_exactly_forty_through() {
    let w = ip_limited();
    let _log = w.on_failure();
    let start = std::sync::Barrier::new(100);
    let outcomes: Vec<Result<u16, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..100)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    Call::get(&w, "/healthz")
                        .header("CF-Connecting-IP", "203.0.113.10")
                        .try_send()
                        .map(|r| r.status)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // A connection the local proxy dropped says nothing about the limiter; it must be rare.
    let statuses: Vec<u16> = outcomes
        .iter()
        .filter_map(|o| o.as_ref().ok().copied())
        .collect();
    let dropped = outcomes.len() - statuses.len();
    assert!(dropped <= 2, "{dropped} transport errors: {outcomes:?}");
    let ok = statuses.iter().filter(|&&s| s == 200).count();
    let limited = statuses.iter().filter(|&&s| s == 429).count();
    assert_eq!(ok, 40, "exactly 40 through: {statuses:?}");
    assert_eq!(ok + limited, statuses.len(), "{statuses:?}");
}

#[test]
fn the_cooldown_holds_ten_seconds_and_then_lifts() {
    let w = ip_limited();
    let _log = w.on_failure();
    let ip = "203.0.113.20";
    for _ in 0..40 {
        assert_eq!(from(&w, ip, "/healthz").status, 200);
    }
    // The cooldown starts somewhere between sending the 41st request and its answer.
    let started = Instant::now();
    let over = from(&w, ip, "/healthz");
    let answered = Instant::now();
    over.assert_error(429, "rate_limited");
    assert_eq!(over.message(), "Rate limit exceeded");
    assert_eq!(over.header("retry-after"), Some("10"));
    assert!(
        over.header("ratelimit").is_none(),
        "a 429 did not pass the limiter"
    );
    // Requests during the cooldown are refused and do not extend it.
    std::thread::sleep(Duration::from_secs(5));
    let during = from(&w, ip, "/healthz");
    assert_eq!(during.status, 429);
    let retry: u64 = during.header("retry-after").unwrap().parse().unwrap();
    assert!(
        (1..=6).contains(&retry),
        "Retry-After {retry} during the cooldown"
    );
    while started.elapsed() < Duration::from_millis(9_500) {
        assert_eq!(
            from(&w, ip, "/healthz").status,
            429,
            "at {:?}",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Lifted once 10 s have passed for certain; polled, since a request takes time too.
    std::thread::sleep(Duration::from_millis(10_050).saturating_sub(answered.elapsed()));
    let lifted = loop {
        let status = from(&w, ip, "/healthz").status;
        if status == 200 || answered.elapsed() > Duration::from_secs(13) {
            break status;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(lifted, 200, "lifted after 10 s");
}

#[test]
fn addresses_are_limited_separately_and_ipv6_per_64() {
    let w = ip_limited();
    let _log = w.on_failure();
    for i in 0..40 {
        assert_eq!(
            from(&w, &format!("2001:db8:aa:1::{:x}", i + 1), "/healthz").status,
            200
        );
    }
    // The same /64 is one client; another /64, or an IPv4 address, is not.
    assert_eq!(from(&w, "2001:db8:aa:1:ffff::9", "/healthz").status, 429);
    assert_eq!(from(&w, "2001:db8:aa:2::1", "/healthz").status, 200);
    assert_eq!(from(&w, "198.51.100.7", "/healthz").status, 200);
    // X-Forwarded-For is never read: changing it does not make a new client.
    let r = Call::get(&w, "/healthz")
        .header("CF-Connecting-IP", "2001:db8:aa:1::1")
        .header("X-Forwarded-For", "192.0.2.55")
        .send();
    assert_eq!(r.status, 429);
}

#[test]
fn bad_tokens_are_throttled_before_authentication() {
    let w = ip_limited();
    let _log = w.on_failure();
    let statuses: Vec<u16> = (0..45)
        .map(|i| {
            Call::get(&w, "/api/v1/teams")
                .header("CF-Connecting-IP", "203.0.113.30")
                .bearer(&format!("forged.token.{i}"))
                .send()
                .status
        })
        .collect();
    assert!(statuses[..40].iter().all(|&s| s == 401), "{statuses:?}");
    assert!(statuses[40..].iter().all(|&s| s == 429), "{statuses:?}");
}

#[test]
fn the_principal_limit_holds_across_many_addresses() {
    let w = spawn(
        Options::default()
            .var("RATE_LIMIT_PRINCIPAL_REQUESTS", "5")
            .var("RATE_LIMIT_PRINCIPAL_WINDOW_MS", "60000"),
    );
    let _log = w.on_failure();
    let owner = unique_user("owner");
    let team = Call::post(&w, "/api/v1/teams")
        .header("CF-Connecting-IP", "192.0.2.1")
        .bearer(&token(&owner))
        .json(&json!({"name": "t"}))
        .send()
        .json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let key_body = json!({"name": "k", "kind": "device"});
    let make_key = |ip: &str| {
        let r = Call::post(&w, "/api/v1/api-keys")
            .header("CF-Connecting-IP", ip)
            .bearer(&token(&owner))
            .header("X-Team-ID", &team)
            .json(&key_body)
            .send();
        assert_eq!(r.status, 201, "{}", r.text);
        r.json()["key"].as_str().unwrap().to_string()
    };
    let (key_a, key_b) = (make_key("192.0.2.2"), make_key("192.0.2.3"));
    let get = |key: &str, ip: &str| {
        Call::get(&w, "/api/v1/cloud-providers")
            .header("CF-Connecting-IP", ip)
            .bearer(key)
            .send()
    };
    for i in 0..5 {
        assert_eq!(get(&key_a, &format!("198.51.100.{}", i + 10)).status, 200);
    }
    let over = get(&key_a, "198.51.100.99");
    over.assert_error(429, "rate_limited");
    let retry: u64 = over.header("retry-after").unwrap().parse().unwrap();
    assert!((50..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(
        get(&key_b, "198.51.100.99").status,
        200,
        "another key is another principal"
    );
    // A JWT's principal is its user and team: the owner's two earlier calls (team creation
    // has no team; key creation does) leave three in this team.
    let as_owner = |ip: &str, team: &str| {
        Call::get(&w, "/api/v1/cloud-providers")
            .header("CF-Connecting-IP", ip)
            .bearer(&token(&owner))
            .header("X-Team-ID", team)
            .send()
            .status
    };
    let statuses: Vec<u16> = (0..4)
        .map(|i| as_owner(&format!("192.0.2.{}", 100 + i), &team))
        .collect();
    assert_eq!(statuses, [200, 200, 200, 429]);
    // The same team spelled in upper case is the same principal, not a fresh budget.
    assert_eq!(as_owner("192.0.2.110", &team.to_uppercase()), 429);
    assert_eq!(as_owner("192.0.2.111", &format!(" {team} ")), 429);
}

#[test]
fn responses_that_passed_carry_the_ratelimit_headers() {
    let w = ip_limited();
    let _log = w.on_failure();
    let ok = from(&w, "203.0.113.40", "/healthz");
    assert_eq!(ok.header("ratelimit-policy"), Some("\"ip\";q=40;w=10"));
    assert_eq!(ok.header("ratelimit"), Some("\"ip\";r=39;t=10"));
    let second = from(&w, "203.0.113.40", "/healthz");
    assert!(second
        .header("ratelimit")
        .unwrap()
        .starts_with("\"ip\";r=38;t="));
    // An authenticated caller meets its principal's limiter only; a refused token is counted
    // for its address.
    let user = unique_user("u");
    let r = Call::get(&w, "/api/v1/teams")
        .header("CF-Connecting-IP", "203.0.113.41")
        .bearer(&token(&user))
        .send();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("ratelimit-policy"),
        Some("\"principal\";q=1000000;w=60")
    );
    let refused = Call::get(&w, "/api/v1/teams")
        .header("CF-Connecting-IP", "203.0.113.41")
        .send();
    assert_eq!(refused.status, 401);
    assert!(
        refused
            .header("ratelimit")
            .unwrap()
            .starts_with("\"ip\";r=39"),
        "the JWT call before it was not counted for the address"
    );
}

#[test]
fn an_unreachable_limiter_fails_writes_closed_and_reads_open() {
    let w = worker();
    let _log = w.on_failure();
    let owner = unique_user("owner");
    let team = new_team(w, &owner);
    let call = |c: Call| {
        c.bearer(&token(&owner))
            .header("X-Team-ID", &team)
            .header("X-Test-Fail-Limiter", "1")
            .send()
    };
    let write = call(
        Call::put(w, "/api/v1/cloud-providers/comfy-cloud").json(&json!({"api_key": "comfyui-x"})),
    );
    write.assert_error(503, "service_unavailable");
    assert_eq!(write.header("retry-after"), Some("1"));
    let read = call(Call::get(w, "/api/v1/cloud-providers"));
    assert_eq!(read.status, 200, "{}", read.text);
    assert!(read.header("ratelimit").is_none(), "no limiter was passed");
    let line = w.log_line_of(&read);
    assert_eq!(line["limiter"], "fail_open");
    // Nothing was written by the refused write.
    Call::get(w, "/api/v1/cloud-providers/comfy-cloud")
        .bearer(&token(&owner))
        .header("X-Team-ID", &team)
        .send()
        .assert_error(404, "not_found");
}

#[test]
fn the_failure_hook_does_not_exist_in_production() {
    let w = spawn(
        Options::default()
            .var("ENVIRONMENT", "production")
            .var("JWT_SECRET", "a-real-production-secret-of-32-bytes!!")
            .var(
                "CREDENTIAL_KEYS",
                r#"{"active":"p1","keys":{"p1":"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="}}"#,
            ),
    );
    let _log = w.on_failure();
    // A write with the hook's header passes the limiter as if the header were not there.
    let r = Call::post(&w, "/api/v1/teams")
        .header("X-Test-Fail-Limiter", "1")
        .json(&json!({"name": "t"}))
        .send();
    r.assert_error(401, "unauthorized");
    assert!(
        r.header("ratelimit").is_some(),
        "the limiter ran and was passed"
    );
}

/// A worker with the contract's limits, both of them: 40 per 10 s per address (10 s
/// cooldown), and `principal` requests per minute per principal.
fn contract_limits(principal: &str) -> Worker {
    spawn(
        Options::default()
            .var("RATE_LIMIT_IP_REQUESTS", "40")
            .var("RATE_LIMIT_IP_WINDOW_MS", "10000")
            .var("RATE_LIMIT_IP_COOLDOWN_MS", "10000")
            .var("RATE_LIMIT_PRINCIPAL_REQUESTS", principal)
            .var("RATE_LIMIT_PRINCIPAL_WINDOW_MS", "60000"),
    )
}

/// One GET of the key's team's credentials from `ip`: its status.
fn read(w: &Worker, key: &str, ip: &str) -> u16 {
    Call::get(w, "/api/v1/cloud-providers")
        .header("CF-Connecting-IP", ip)
        .bearer(key)
        .send()
        .status
}

/// `n` GETs of the team's credentials with `key` from `ip`, on eight threads.
fn reads(w: &Worker, key: &str, ip: &str, n: usize) -> Vec<u16> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                s.spawn(move || {
                    (t..n)
                        .step_by(8)
                        .map(|_| read(w, key, ip))
                        .collect::<Vec<u16>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

#[test]
fn one_key_from_one_address_gets_its_whole_budget_of_600_a_minute() {
    let w = contract_limits("600");
    let _log = w.on_failure();
    let team = Team::new(&w);
    let key = team.key(&w, json!({"name": "integration", "kind": "secret"}));
    let started = Instant::now();
    let statuses = reads(&w, &key, "203.0.113.50", 600);
    assert!(
        started.elapsed() < Duration::from_secs(55),
        "too slow to say: {:?}",
        started.elapsed()
    );
    assert_eq!(statuses.len(), 600);
    assert!(
        statuses.iter().all(|s| *s == 200),
        "{:?}",
        statuses.iter().filter(|s| **s != 200).count()
    );
    let over = Call::get(&w, "/api/v1/cloud-providers")
        .header("CF-Connecting-IP", "203.0.113.50")
        .bearer(&key)
        .send();
    over.assert_error(429, "rate_limited");
    // The principal's minute, not the address's 10 s cooldown.
    let retry: u64 = over.header("retry-after").unwrap().parse().unwrap();
    assert!(retry > 10, "Retry-After {retry}");
}

#[test]
fn twenty_teams_behind_one_address_each_get_their_full_budget() {
    let w = contract_limits("30");
    let _log = w.on_failure();
    let keys: Vec<String> = (0..20)
        .map(|_| Team::new(&w).key(&w, json!({"name": "edge", "kind": "secret"})))
        .collect();
    // 600 authenticated requests from one address, fifteen times its anonymous cap.
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = keys
            .iter()
            .map(|key| {
                let w = &w;
                s.spawn(move || {
                    (0..31)
                        .map(|_| read(w, key, "198.51.100.77"))
                        .collect::<Vec<u16>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    for (team, per_key) in statuses.chunks(31).enumerate() {
        assert!(
            per_key[..30].iter().all(|s| *s == 200),
            "team {team}: {per_key:?}"
        );
        assert_eq!(
            per_key[30], 429,
            "team {team}: the 31st is over its own budget"
        );
    }
}

fn forged_key() -> String {
    edge_credentials::core::auth::api_key::generate(
        edge_credentials::core::auth::api_key::KeyKind::Secret,
    )
}

#[test]
fn an_attacker_in_cooldown_does_not_stop_a_valid_integration_on_the_same_address() {
    let w = contract_limits("1000000");
    let _log = w.on_failure();
    let ip = "192.0.2.66";
    let team = Team::new(&w);
    let key = team.key(&w, json!({"name": "integration", "kind": "secret"}));
    let get = |k: &str| {
        Call::get(&w, "/api/v1/cloud-providers")
            .header("CF-Connecting-IP", ip)
            .bearer(k)
            .send()
    };
    assert_eq!(get(&key).status, 200);
    // Its success reaches the address's object after the response.
    std::thread::sleep(Duration::from_millis(500));

    // Forged keys (valid checksums, unknown to D1): forty 401s, then the window is full.
    let forged: Vec<u16> = (0..45).map(|_| get(&forged_key()).status).collect();
    assert!(forged[..40].iter().all(|s| *s == 401), "{forged:?}");
    assert!(forged[40..].iter().all(|s| *s == 429), "{forged:?}");
    // Anonymous requests from there are refused too, while the integration keeps working.
    assert_eq!(from(&w, ip, "/healthz").status, 429);
    for _ in 0..5 {
        assert_eq!(get(&key).status, 200);
    }
    // A key that never authenticated from this address waits out the cooldown.
    let newcomer = team.key(&w, json!({"name": "new", "kind": "secret"}));
    get(&newcomer).assert_error(429, "rate_limited");
    // Another address is not affected.
    assert_eq!(
        Call::get(&w, "/api/v1/cloud-providers")
            .header("CF-Connecting-IP", "192.0.2.67")
            .bearer(&newcomer)
            .send()
            .status,
        200
    );
}

#[test]
fn during_a_cooldown_a_forged_key_costs_no_d1_read() {
    let w = contract_limits("1000000");
    let _log = w.on_failure();
    let ip = "192.0.2.88";
    let forged = |_: usize| {
        Call::get(&w, "/api/v1/cloud-providers")
            .header("CF-Connecting-IP", ip)
            .bearer(&forged_key())
            .send()
    };
    // Before the cooldown, a forged key is one D1 read (the key's row) and a 401.
    let first = forged(0);
    assert_eq!(first.status, 401);
    assert_eq!(w.log_line_of(&first)["d1_calls"], 1);
    let statuses: Vec<u16> = (1..45).map(|i| forged(i).status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        39,
        "{statuses:?}"
    );
    // In the cooldown: refused without a D1 read, by the log line's own count.
    let refused = forged(99);
    refused.assert_error(429, "rate_limited");
    let line = w.log_line_of(&refused);
    assert_eq!(line["d1_calls"], 0, "{line}");
    assert_eq!(line["status"], 429);
}

#[test]
fn an_unreachable_address_limiter_fails_closed_where_it_guards_d1() {
    let w = contract_limits("1000000");
    let _log = w.on_failure();
    // /healthz reads D1 for anyone: without the address's limiter, 503.
    let health = Call::get(&w, "/healthz")
        .header("CF-Connecting-IP", "192.0.2.90")
        .header("X-Test-Fail-Limiter", "1")
        .send();
    health.assert_error(503, "service_unavailable");
    assert!(health.header("retry-after").is_some());
    // A refused token reads nothing: still its 401.
    Call::get(&w, "/api/v1/teams")
        .header("CF-Connecting-IP", "192.0.2.90")
        .header("X-Test-Fail-Limiter", "1")
        .send()
        .assert_error(401, "unauthorized");
    // A key during a known cooldown needs the address's object before D1: 503.
    let ip = "192.0.2.91";
    for _ in 0..41 {
        from(&w, ip, "/healthz");
    }
    let key = Team::new(&w).key(&w, json!({"name": "k", "kind": "secret"}));
    let during = Call::get(&w, "/api/v1/cloud-providers")
        .header("CF-Connecting-IP", ip)
        .header("X-Test-Fail-Limiter", "1")
        .bearer(&key)
        .send();
    during.assert_error(503, "service_unavailable");
    assert!(during.header("retry-after").is_some());
    // A read by an authenticated principal follows the read policy: served, fail open.
    let read = Call::get(&w, "/api/v1/cloud-providers")
        .header("CF-Connecting-IP", "192.0.2.92")
        .header("X-Test-Fail-Limiter", "1")
        .bearer(&key)
        .send();
    assert_eq!(read.status, 200, "{}", read.text);
    assert_eq!(w.log_line_of(&read)["limiter"], "fail_open");
}

/// Leases (issue 16): a busy key asks its limiter object for a lease only now and then,
/// each GET still makes exactly one D1 round trip, and the limit's headers count down by
/// one per request.
#[test]
fn a_busy_key_spends_leased_tokens_with_one_d1_round_trip_each() {
    let w = contract_limits("600");
    let _log = w.on_failure();
    let team = Team::new(&w);
    let key = team.key(&w, json!({"name": "integration", "kind": "secret"}));
    let put = team.put(&w, json!({"api_key": "comfyui-leases-0123456789abcdef"}));
    assert_eq!(put.status, 200, "{}", put.text);
    let replies: Vec<Reply> = (0..60)
        .map(|_| {
            Call::get(&w, CREDENTIAL_PATH)
                .header("CF-Connecting-IP", "203.0.113.60")
                .bearer(&key)
                .send()
        })
        .collect();
    assert!(replies.iter().all(|r| r.status == 200));
    let remaining: Vec<u32> = replies
        .iter()
        .map(|r| {
            let header = r.header("ratelimit").unwrap();
            header
                .split(";r=")
                .nth(1)
                .and_then(|rest| rest.split(';').next())
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(remaining, (540..600).rev().collect::<Vec<u32>>());
    let last = w.log_line_of(replies.last().unwrap());
    assert_eq!(last["d1_calls"], 1);
    let ids: Vec<&str> = replies
        .iter()
        .map(|r| r.header("x-request-id").unwrap())
        .collect();
    let lines: Vec<serde_json::Value> = w
        .request_logs()
        .into_iter()
        .filter(|l| ids.contains(&l["request_id"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(lines.len(), 60);
    assert!(
        lines.iter().all(|l| l["d1_calls"] == 1),
        "one D1 round trip each"
    );
    let object_calls: u64 = lines.iter().map(|l| l["do_calls"].as_u64().unwrap()).sum();
    // Leases of 1, 2, 4, 8, 16, then 30: a handful of calls, not 60.
    assert!(
        object_calls <= 10,
        "{object_calls} limiter calls for 60 requests"
    );
}

/// Issue 16: a read by a key whose limiter has been granting it sends its limiter call and
/// its D1 batch at the same time, so a read the limiter then refuses has already read D1.
/// Once refused, the key's next request waits for the limiter's answer and reads nothing:
/// a throttled key cannot make every refused request cost a D1 read. (A limit of 3 is
/// never leased, so every request here asks the limiter.)
#[test]
fn a_granted_keys_read_overlaps_its_limiter_call_and_a_refused_one_reads_nothing() {
    let w = contract_limits("3");
    let _log = w.on_failure();
    let team = Team::new(&w);
    let key = team.key(&w, json!({"name": "integration", "kind": "secret"}));
    let seen: Vec<(u16, u64, u64)> = (0..5)
        .map(|_| {
            let r = Call::get(&w, CREDENTIAL_PATH)
                .header("CF-Connecting-IP", "203.0.113.61")
                .bearer(&key)
                .send();
            let line = w.log_line_of(&r);
            let count = |field: &str| line[field].as_u64().unwrap();
            (r.status, count("do_calls"), count("d1_calls"))
        })
        .collect();
    assert_eq!(
        seen,
        [
            (404, 1, 1), // no answer yet in this isolate: the limiter first, then D1
            (404, 1, 1), // granted before: both at once
            (404, 1, 1),
            (429, 1, 1), // both at once, and the limiter refused: the read is dropped
            (429, 1, 0), // refused before: the limiter first, and no read
        ]
    );
}
