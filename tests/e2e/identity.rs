//! Authentication, teams, members, API keys and the isolation between teams.

use crate::support::*;
use serde_json::json;

fn assert_401(r: &Reply, message: &str) {
    r.assert_error(401, "unauthorized");
    assert_eq!(r.message(), message);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
}

#[test]
fn the_contracts_401_messages() {
    let w = worker();
    let _log = w.on_failure();
    let path = "/api/v1/teams";
    assert_401(&Call::get(w, path).send(), "Missing authorization header");
    assert_401(
        &Call::get(w, path)
            .header("Authorization", "Basic dXNlcjpwYXNz")
            .send(),
        "Invalid token",
    );
    assert_401(
        &Call::get(w, path).header("Authorization", "Bearer ").send(),
        "Invalid token",
    );
    assert_401(
        &Call::get(w, path).bearer("not.a.jwt").send(),
        "Invalid token",
    );
    let expired = token_with(&json!({"sub": "u", "exp": now_s() - 120}));
    assert_401(
        &Call::get(w, path).bearer(&expired).send(),
        "Token has expired",
    );
    let inside_leeway = token_with(&json!({"sub": unique_user("leeway"), "exp": now_s() - 30}));
    assert_eq!(Call::get(w, path).bearer(&inside_leeway).send().status, 200);
    let string_exp = token_with(&json!({"sub": "u", "exp": (now_s() + 60).to_string()}));
    assert_401(
        &Call::get(w, path).bearer(&string_exp).send(),
        "Invalid token",
    );
    assert_401(
        &Call::get(w, path)
            .bearer("sk-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA000000")
            .send(),
        "Invalid or expired API key",
    );
}

#[test]
fn a_huge_authorization_header_is_refused_without_a_5xx() {
    let w = worker();
    let _log = w.on_failure();
    // Over our 8 KiB cap but under the runtime's own header limit: our check answers.
    let big = format!("Bearer {}", "a".repeat(9 * 1024));
    assert_401(
        &Call::get(w, "/api/v1/teams")
            .header("Authorization", &big)
            .send(),
        "Invalid token",
    );
    // 1 MB: whoever refuses it, it is a clean 4xx and the worker keeps serving.
    let huge = format!("Bearer {}", "a".repeat(1 << 20));
    if let Ok(r) = Call::get(w, "/api/v1/teams")
        .header("Authorization", &huge)
        .try_send()
    {
        assert!((400..500).contains(&r.status), "{} {}", r.status, r.text);
    }
    assert_eq!(Call::get(w, "/healthz").send().status, 200);
}

#[test]
fn teams_are_created_and_listed_per_caller() {
    let w = worker();
    let _log = w.on_failure();
    let (alice, bob) = (unique_user("alice"), unique_user("bob"));
    let r = Call::post(w, "/api/v1/teams")
        .bearer(&token(&alice))
        .json(&json!({"name": "Render farm"}))
        .send();
    assert_eq!(r.status, 201, "{}", r.text);
    let team = r.json();
    assert_eq!(team["name"], "Render farm");
    assert_eq!(team["role"], "owner");
    let id = team["id"].as_str().unwrap();
    assert_eq!(id.len(), 36);
    assert_eq!(&id[14..15], "7", "UUIDv7");
    assert!(team["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(team.as_object().unwrap().len(), 4);

    let listed = Call::get(w, "/api/v1/teams")
        .bearer(&token(&alice))
        .send()
        .json();
    assert_eq!(listed["teams"], json!([team]));
    let none = Call::get(w, "/api/v1/teams")
        .bearer(&token(&bob))
        .send()
        .json();
    assert_eq!(none, json!({"teams": [], "next_cursor": null}));
}

#[test]
fn team_creation_validates_its_body() {
    let w = worker();
    let _log = w.on_failure();
    let t = token(&unique_user("v"));
    let post = |body: &str, ct: &str| {
        Call::post(w, "/api/v1/teams")
            .bearer(&t)
            .header("Content-Type", ct)
            .raw_body(body.as_bytes().to_vec())
            .send()
    };
    post(r#"{"name": ""}"#, "application/json").assert_error(400, "invalid_request");
    post(
        &format!(r#"{{"name": "{}"}}"#, "x".repeat(101)),
        "application/json",
    )
    .assert_error(400, "invalid_request");
    post(r#"{"name": "a", "owner": "me"}"#, "application/json")
        .assert_error(400, "invalid_request");
    post(r#"{"name": 5}"#, "application/json").assert_error(400, "invalid_request");
    post(r#"{"name": "a""#, "application/json").assert_error(400, "invalid_request");
    post(r#"{"name": "a"}"#, "text/plain").assert_error(415, "unsupported_media_type");
    let big = format!(r#"{{"name": "{}"}}"#, "x".repeat(17 * 1024));
    post(&big, "application/json").assert_error(413, "payload_too_large");
}

#[test]
fn x_team_id_is_required_well_formed_and_a_membership() {
    let w = worker();
    let _log = w.on_failure();
    let (owner, stranger) = (unique_user("owner"), unique_user("stranger"));
    let team = new_team(w, &owner);
    let path = "/api/v1/team/members";
    let r = Call::get(w, path).bearer(&token(&owner)).send();
    r.assert_error(400, "invalid_request");
    assert_eq!(r.message(), "X-Team-ID header is required");
    Call::get(w, path)
        .bearer(&token(&owner))
        .header("X-Team-ID", "not-a-uuid")
        .send()
        .assert_error(400, "invalid_request");
    Call::get(w, path)
        .bearer(&token(&stranger))
        .header("X-Team-ID", &team)
        .send()
        .assert_error(403, "forbidden");
    // A team that does not exist looks the same as one you are not in.
    Call::get(w, path)
        .bearer(&token(&owner))
        .header("X-Team-ID", "019abc12-4567-7890-abcd-ef1234567891")
        .send()
        .assert_error(403, "forbidden");
    let ok = Call::get(w, path)
        .bearer(&token(&owner))
        .header("X-Team-ID", &team)
        .send();
    assert_eq!(ok.status, 200, "{}", ok.text);
    let members = ok.json()["members"].clone();
    assert_eq!(members.as_array().unwrap().len(), 1);
    assert_eq!(members[0]["user_id"], owner.as_str());
    assert_eq!(members[0]["role"], "owner");
}

/// `DELETE /api/v1/team/members/{user}` in `team`, as `by`.
fn remove_member(w: &Worker, team: &str, by: &str, user: &str) -> Reply {
    Call::delete(w, &format!("/api/v1/team/members/{user}"))
        .bearer(&token(by))
        .header("X-Team-ID", team)
        .send()
}

#[test]
fn roles_decide_who_manages_members() {
    let w = worker();
    let _log = w.on_failure();
    let [owner, admin, member, newbie] = ["owner", "admin", "member", "newbie"].map(unique_user);
    let team = new_team(w, &owner);
    add_member(w, &owner, &team, &admin, "admin");
    add_member(w, &owner, &team, &member, "member");
    let put = |by: &str, user: &str, role: &str| {
        Call::put(w, &format!("/api/v1/team/members/{user}"))
            .bearer(&token(by))
            .header("X-Team-ID", &team)
            .json(&json!({ "role": role }))
            .send()
    };
    // Members read the list but change nothing.
    let list = Call::get(w, "/api/v1/team/members")
        .bearer(&token(&member))
        .header("X-Team-ID", &team)
        .send();
    assert_eq!(list.json()["members"].as_array().unwrap().len(), 3);
    put(&member, &newbie, "member").assert_error(403, "forbidden");
    // Admins add members and admins, but never owners, and never touch an owner.
    let added = put(&admin, &newbie, "member");
    assert_eq!(added.status, 200, "{}", added.text);
    assert_eq!(added.json()["role"], "member");
    assert!(added.json()["added_at"].as_str().unwrap().ends_with('Z'));
    for refused in [put(&admin, &newbie, "owner"), put(&admin, &owner, "member")] {
        refused.assert_error(403, "forbidden");
        assert_eq!(
            refused.message(),
            "Only an owner can grant or change the owner role"
        );
    }
    let remove = |by: &str, user: &str| remove_member(w, &team, by, user);
    remove(&admin, &owner).assert_error(403, "forbidden");
    remove(&member, &newbie).assert_error(403, "forbidden");
    let roles = || {
        w.d1(&format!(
            "SELECT user_id, role FROM team_members WHERE team_id = '{team}' ORDER BY user_id"
        ))
    };
    assert!(
        roles().contains(&json!({"user_id": owner, "role": "owner"})),
        "{:?}",
        roles()
    );
    assert_eq!(roles().len(), 4, "nothing was removed");
    put(&admin, &newbie, "root").assert_error(400, "invalid_request");
    // Only an owner grants owner.
    assert_eq!(put(&owner, &newbie, "owner").json()["role"], "owner");
    // With two owners the last-owner rule no longer covers them: the role rule alone does.
    put(&admin, &newbie, "member").assert_error(403, "forbidden");
    remove(&admin, &newbie).assert_error(403, "forbidden");
    assert!(
        roles().contains(&json!({"user_id": newbie, "role": "owner"})),
        "{:?}",
        roles()
    );
    assert_eq!(remove(&admin, &member).status, 204, "admins remove members");
}

#[test]
fn the_last_owner_can_be_neither_removed_nor_demoted() {
    let w = worker();
    let _log = w.on_failure();
    let [owner, second] = ["owner", "second"].map(unique_user);
    let team = new_team(w, &owner);
    let demote = |by: &str, user: &str| {
        Call::put(w, &format!("/api/v1/team/members/{user}"))
            .bearer(&token(by))
            .header("X-Team-ID", &team)
            .json(&json!({"role": "admin"}))
            .send()
    };
    let remove = |by: &str, user: &str| remove_member(w, &team, by, user);
    demote(&owner, &owner).assert_error(409, "conflict");
    remove(&owner, &owner).assert_error(409, "conflict");
    add_member(w, &owner, &team, &second, "owner");
    assert_eq!(demote(&owner, &second).status, 200);
    add_member(w, &owner, &team, &second, "owner");
    let r = remove(&second, &owner);
    assert_eq!(r.status, 204, "{}", r.text);
    assert!(r.text.is_empty());
    remove(&second, &second).assert_error(409, "conflict");
    remove(&second, "nobody-here").assert_error(404, "not_found");
    // Removal takes effect on the very next request.
    Call::get(w, "/api/v1/team/members")
        .bearer(&token(&owner))
        .header("X-Team-ID", &team)
        .send()
        .assert_error(403, "forbidden");
}

#[test]
fn api_keys_are_shown_once_and_listed_without_the_key() {
    let w = worker();
    let _log = w.on_failure();
    let owner = unique_user("owner");
    let team = new_team(w, &owner);
    let created = new_key(w, &owner, &team, json!({"name": "ci", "kind": "secret"}));
    let key = created["key"].as_str().unwrap();
    assert!(key.starts_with("sk-") && key.len() == 41, "{key}");
    assert_eq!(
        created["key_preview"],
        format!("{}...{}", &key[..8], &key[37..])
    );
    assert_eq!(
        created["scopes"],
        json!(["cloud_providers:read", "cloud_providers:write"])
    );
    assert_eq!(created["kind"], "secret");
    assert_eq!(created["last_used_at"], json!(null));
    assert_eq!(created["revoked_at"], json!(null));
    assert_eq!(created["expires_at"], json!(null));

    let device = new_key(w, &owner, &team, json!({"name": "gpu", "kind": "device"}));
    assert!(device["key"].as_str().unwrap().starts_with("dk-"));

    let list = Call::get(w, "/api/v1/api-keys")
        .bearer(&token(&owner))
        .header("X-Team-ID", &team)
        .send();
    assert_eq!(list.status, 200, "{}", list.text);
    assert!(
        !list.text.contains(key),
        "the key must never be shown again"
    );
    let keys = list.json()["api_keys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().all(|k| k.get("key").is_none()));
    assert_eq!(keys[0]["id"], device["id"], "newest first");
}

#[test]
fn api_keys_cannot_manage_keys_members_or_teams() {
    let w = worker();
    let _log = w.on_failure();
    let owner = unique_user("owner");
    let team = new_team(w, &owner);
    let key = new_key(w, &owner, &team, json!({"name": "ci", "kind": "secret"}))["key"]
        .as_str()
        .unwrap()
        .to_string();
    let r = Call::get(w, "/api/v1/api-keys").bearer(&key).send();
    r.assert_error(403, "forbidden");
    assert_eq!(r.message(), "API keys cannot be managed with an API key");
    Call::post(w, "/api/v1/api-keys")
        .bearer(&key)
        .json(&json!({"name": "x", "kind": "secret"}))
        .send()
        .assert_error(403, "forbidden");
    // The contract's message covers team members too.
    for call in [
        Call::get(w, "/api/v1/team/members"),
        Call::put(w, "/api/v1/team/members/someone").json(&json!({"role": "member"})),
        Call::delete(w, &format!("/api/v1/team/members/{owner}")),
    ] {
        let r = call.bearer(&key).send();
        r.assert_error(403, "forbidden");
        assert_eq!(r.message(), "API keys cannot be managed with an API key");
    }
    Call::post(w, "/api/v1/teams")
        .bearer(&key)
        .json(&json!({"name": "x"}))
        .send()
        .assert_error(403, "forbidden");
}

#[test]
fn only_owners_and_admins_manage_keys() {
    let w = worker();
    let _log = w.on_failure();
    let [owner, admin, member] = ["owner", "admin", "member"].map(unique_user);
    let team = new_team(w, &owner);
    add_member(w, &owner, &team, &admin, "admin");
    add_member(w, &owner, &team, &member, "member");
    let create = |by: &str| {
        Call::post(w, "/api/v1/api-keys")
            .bearer(&token(by))
            .header("X-Team-ID", &team)
            .json(&json!({"name": "k", "kind": "device"}))
            .send()
    };
    assert_eq!(create(&admin).status, 201);
    create(&member).assert_error(403, "forbidden");
    Call::get(w, "/api/v1/api-keys")
        .bearer(&token(&member))
        .header("X-Team-ID", &team)
        .send()
        .assert_error(403, "forbidden");
}

#[test]
fn revocation_takes_effect_on_the_next_request() {
    let w = worker();
    let _log = w.on_failure();
    let owner = unique_user("owner");
    let team = new_team(w, &owner);
    let created = new_key(w, &owner, &team, json!({"name": "ci", "kind": "secret"}));
    let key = created["key"].as_str().unwrap();
    let id = created["id"].as_str().unwrap();
    // Authenticated (403 is authorization), so the key is live.
    assert_eq!(
        Call::get(w, "/api/v1/api-keys").bearer(key).send().status,
        403
    );

    let r = Call::delete(w, &format!("/api/v1/api-keys/{id}"))
        .bearer(&token(&owner))
        .header("X-Team-ID", &team)
        .send();
    assert_eq!(r.status, 200, "{}", r.text);
    let revoked_at = r.json()["revoked_at"].as_str().unwrap().to_string();
    assert!(revoked_at.ends_with('Z'));
    assert!(r.json().get("key").is_none());
    assert_401(
        &Call::get(w, "/api/v1/api-keys").bearer(key).send(),
        "Invalid or expired API key",
    );
    // Revoking again is harmless and keeps the first time.
    let again = Call::delete(w, &format!("/api/v1/api-keys/{id}"))
        .bearer(&token(&owner))
        .header("X-Team-ID", &team)
        .send();
    assert_eq!(again.json()["revoked_at"], revoked_at.as_str());
}

#[test]
fn expired_keys_are_refused() {
    let w = worker();
    let _log = w.on_failure();
    let owner = unique_user("owner");
    let team = new_team(w, &owner);
    // Long enough that the key is surely live at its first use, even on a loaded machine.
    let soon = now_s() + 15;
    let expires_at = chrono_like(soon);
    let created = new_key(
        w,
        &owner,
        &team,
        json!({"name": "t", "kind": "secret", "expires_at": expires_at}),
    );
    assert_eq!(created["expires_at"], expires_at.as_str());
    let key = created["key"].as_str().unwrap();
    assert_eq!(
        Call::get(w, "/api/v1/api-keys").bearer(key).send().status,
        403,
        "live before expiry"
    );
    while now_s() <= soon {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_401(
        &Call::get(w, "/api/v1/api-keys").bearer(key).send(),
        "Invalid or expired API key",
    );
    let past = new_key_status(
        w,
        &owner,
        &team,
        json!({"name": "t", "kind": "secret", "expires_at": "2020-01-01T00:00:00Z"}),
    );
    assert_eq!(past, 400);
}

fn new_key_status(w: &Worker, owner: &str, team: &str, body: serde_json::Value) -> u16 {
    Call::post(w, "/api/v1/api-keys")
        .bearer(&token(owner))
        .header("X-Team-ID", team)
        .json(&body)
        .send()
        .status
}

/// RFC 3339 for a Unix time in seconds, without pulling a date crate into the tests.
fn chrono_like(secs: i64) -> String {
    edge_credentials::core::time::rfc3339(secs * 1000)
}

#[test]
fn last_used_at_is_recorded_at_most_once_a_minute() {
    let w = worker();
    let _log = w.on_failure();
    let owner = unique_user("owner");
    let team = new_team(w, &owner);
    let created = new_key(w, &owner, &team, json!({"name": "ci", "kind": "device"}));
    let key = created["key"].as_str().unwrap();
    let last_used = || {
        let list = Call::get(w, "/api/v1/api-keys")
            .bearer(&token(&owner))
            .header("X-Team-ID", &team)
            .send();
        list.json()["api_keys"][0]["last_used_at"].clone()
    };
    assert_eq!(last_used(), json!(null));
    Call::get(w, "/api/v1/api-keys").bearer(key).send();
    // Written after the response (wait_until), so a failed write never fails the request.
    let started = std::time::Instant::now();
    let mut first = last_used();
    while first.is_null() && started.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(100));
        first = last_used();
    }
    assert!(first.as_str().is_some_and(|t| t.ends_with('Z')), "{first}");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    Call::get(w, "/api/v1/api-keys").bearer(key).send();
    assert_eq!(last_used(), first, "not rewritten within the minute");
}

#[test]
fn one_team_never_reaches_into_another() {
    let w = worker();
    let _log = w.on_failure();
    let [a, b] = ["a", "b"].map(unique_user);
    let (team_a, team_b) = (new_team(w, &a), new_team(w, &b));
    let key_b = new_key(w, &b, &team_b, json!({"name": "b", "kind": "secret"}));
    let as_a = |call: Call| call.bearer(&token(&a)).header("X-Team-ID", &team_b).send();
    as_a(Call::get(w, "/api/v1/team/members")).assert_error(403, "forbidden");
    as_a(Call::get(w, "/api/v1/api-keys")).assert_error(403, "forbidden");
    as_a(Call::put(w, &format!("/api/v1/team/members/{a}")).json(&json!({"role": "owner"})))
        .assert_error(403, "forbidden");
    as_a(Call::delete(w, &format!("/api/v1/team/members/{b}"))).assert_error(403, "forbidden");
    // With its own team in X-Team-ID, A cannot revoke B's key by id either.
    let r = Call::delete(
        w,
        &format!("/api/v1/api-keys/{}", key_b["id"].as_str().unwrap()),
    )
    .bearer(&token(&a))
    .header("X-Team-ID", &team_a)
    .send();
    r.assert_error(404, "not_found");
    let b_keys = Call::get(w, "/api/v1/api-keys")
        .bearer(&token(&b))
        .header("X-Team-ID", &team_b)
        .send();
    assert_eq!(b_keys.json()["api_keys"][0]["revoked_at"], json!(null));
    let a_teams = Call::get(w, "/api/v1/teams")
        .bearer(&token(&a))
        .send()
        .json();
    assert_eq!(a_teams["teams"].as_array().unwrap().len(), 1);
}

/// The worker checks these signatures with the runtime's WebCrypto (edge/webcrypto.rs), not
/// with the crates the native tests use: only this test shows that path works.
#[test]
fn es256_eddsa_and_rs256_tokens_verify_against_the_configured_jwks() {
    use base64ct::{Base64UrlUnpadded, Encoding};
    use jwt_compact::{
        alg::{Ed25519, Es256, Rsa, RsaPrivateKey, SigningKey as _},
        jwk::JsonWebKey,
        Algorithm, AlgorithmExt, Claims, Header,
    };
    let mut seed = [0u8; 32];
    seed[0] = 1;
    seed[31] = 7;
    let es = <Es256 as Algorithm>::SigningKey::from_slice(&seed).unwrap();
    let (ed, ed_public) = Ed25519::generate(&mut rand_core::OsRng);
    let rsa = RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap();
    let jwk = |key: JsonWebKey<'_>, kid: &str| {
        let mut v = serde_json::to_value(key).unwrap();
        v["kid"] = json!(kid);
        v
    };
    // A point off the curve passes the shape check; WebCrypto refuses to import it.
    let b64 = |bytes: &[u8]| Base64UrlUnpadded::encode_string(bytes);
    let off_curve = json!({"kty": "EC", "crv": "P-256", "kid": "off",
        "x": b64(&[1u8; 32]), "y": b64(&[2u8; 32])});
    let jwks = json!({"keys": [
        jwk(JsonWebKey::from(&es.to_verifying_key()), "ec"),
        jwk(JsonWebKey::from(&ed_public), "ed"),
        jwk(JsonWebKey::from(&rsa.to_public_key()), "rsa"),
        off_curve,
    ]});
    let w = spawn(Options::default().var("JWT_JWKS", &jwks.to_string()));
    let _log = w.on_failure();
    let claims = Claims::new(json!({"sub": unique_user("jwks"), "exp": now_s() + 600}));
    let tokens = [
        Es256
            .token(&Header::empty().with_key_id("ec"), &claims, &es)
            .unwrap(),
        Ed25519
            .token(&Header::empty().with_key_id("ed"), &claims, &ed)
            .unwrap(),
        Rsa::rs256()
            .token(&Header::empty().with_key_id("rsa"), &claims, &rsa)
            .unwrap(),
    ];
    for t in &tokens {
        let r = Call::get(&w, "/api/v1/teams").bearer(t).send();
        assert_eq!(r.status, 200, "{}", r.text);
    }
    // Each signature really is checked: the same token with another user's claims, or with
    // one bit of its signature flipped, is refused.
    let other = Claims::new(json!({"sub": unique_user("jwks-forged"), "exp": now_s() + 600}));
    let forged_payload = Es256
        .token(&Header::empty().with_key_id("ec"), &other, &es)
        .unwrap();
    let forged_payload = forged_payload.split('.').nth(1).unwrap();
    for t in &tokens {
        let mut parts: Vec<String> = t.split('.').map(str::to_string).collect();
        let signature = parts[2].clone();
        parts[1] = forged_payload.to_string();
        let swapped = parts.join(".");
        assert_401(
            &Call::get(&w, "/api/v1/teams").bearer(&swapped).send(),
            "Invalid token",
        );
        let mut bytes = Base64UrlUnpadded::decode_vec(&signature).unwrap();
        bytes[10] ^= 1;
        let (signed, _) = t.rsplit_once('.').unwrap();
        let flipped = format!("{signed}.{}", b64(&bytes));
        assert_401(
            &Call::get(&w, "/api/v1/teams").bearer(&flipped).send(),
            "Invalid token",
        );
    }
    // A good signature on expired claims is the expiry message.
    let expired = Claims::new(json!({"sub": unique_user("jwks"), "exp": now_s() - 600}));
    let expired = Ed25519
        .token(&Header::empty().with_key_id("ed"), &expired, &ed)
        .unwrap();
    assert_401(
        &Call::get(&w, "/api/v1/teams").bearer(&expired).send(),
        "Token has expired",
    );
    // Refused: a token for the key WebCrypto could not import (the log says why), the right
    // signature under another key's kid, and an unknown kid.
    for kid in ["off", "rsa", "../x"] {
        let t = Es256
            .token(&Header::empty().with_key_id(kid), &claims, &es)
            .unwrap();
        assert_401(
            &Call::get(&w, "/api/v1/teams").bearer(&t).send(),
            "Invalid token",
        );
    }
    assert!(
        w.log_eventually_contains("WebCrypto could not check a JWT_JWKS signature"),
        "the log says why the key verifies nothing"
    );
}

#[test]
fn a_malformed_jwks_is_a_clear_503_not_a_crash() {
    let w = spawn(Options::default().var("JWT_JWKS", "{not json"));
    let _log = w.on_failure();
    let r = Call::get(&w, "/api/v1/teams").bearer(&token("u")).send();
    r.assert_error(503, "service_unavailable");
    assert!(!r.text.contains("not json"));
    assert!(
        w.log_eventually_contains("JWT_JWKS"),
        "the log names the variable"
    );
}

#[test]
fn the_readme_dev_token_command_mints_a_working_token() {
    let w = worker();
    let _log = w.on_failure();
    let user = unique_user("readme");
    let out = std::process::Command::new("node")
        .arg(format!("{ROOT}/scripts/dev-token.mjs"))
        .arg(&user)
        .output()
        .expect("node runs scripts/dev-token.mjs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    let r = Call::post(w, "/api/v1/teams")
        .bearer(token.trim())
        .json(&json!({"name": "from the README"}))
        .send();
    assert_eq!(r.status, 201, "{}", r.text);
}

#[test]
fn teams_per_user_are_capped_for_creation_and_for_member_adds() {
    let w = spawn(Options::default().var("MAX_TEAMS_PER_USER", "2"));
    let _log = w.on_failure();
    let user = unique_user("busy");
    let create = |who: &str| {
        Call::post(&w, "/api/v1/teams")
            .bearer(&token(who))
            .json(&json!({"name": "t"}))
            .send()
    };
    assert_eq!(create(&user).status, 201);
    assert_eq!(create(&user).status, 201);
    let third = create(&user);
    third.assert_error(409, "conflict");
    assert!(
        third.message().contains("at most 2 teams"),
        "{}",
        third.message()
    );
    let teams = Call::get(&w, "/api/v1/teams").bearer(&token(&user)).send();
    assert_eq!(
        teams.json()["teams"].as_array().unwrap().len(),
        2,
        "nothing half-made"
    );

    // Another owner cannot add the user to a third team either.
    let other = unique_user("other");
    let team = new_team(&w, &other);
    let add = Call::put(&w, &format!("/api/v1/team/members/{user}"))
        .bearer(&token(&other))
        .header("X-Team-ID", &team)
        .json(&json!({"role": "member"}))
        .send();
    add.assert_error(409, "conflict");
    assert!(add.message().contains("MAX_TEAMS_PER_USER"));
    // A member already in the team keeps being managed at the cap.
    let second = unique_user("second");
    add_member(&w, &other, &team, &second, "member");
    assert_eq!(create(&second).status, 201, "second is now in two teams");
    add_member(&w, &other, &team, &second, "admin");
}

#[test]
fn failed_authentications_log_who_tried() {
    let w = worker();
    let _log = w.on_failure();
    let owner = unique_user("owner");
    let team = new_team(w, &owner);
    let created = new_key(w, &owner, &team, json!({"name": "old", "kind": "secret"}));
    let (key, key_id) = (
        created["key"].as_str().unwrap().to_string(),
        created["id"].as_str().unwrap().to_string(),
    );
    let revoke = Call::delete(w, &format!("/api/v1/api-keys/{key_id}"))
        .bearer(&token(&owner))
        .header("X-Team-ID", &team)
        .send();
    assert_eq!(revoke.status, 200);
    // A revoked key: 401, and the log line names the key and its team.
    let r = Call::get(w, "/api/v1/cloud-providers").bearer(&key).send();
    r.assert_error(401, "unauthorized");
    let line = w.log_line_of(&r);
    assert_eq!(line["principal_kind"], "secret_key");
    assert_eq!(line["principal_id"], key_id.as_str());
    assert_eq!(line["team_id"], team.as_str());
    // A valid JWT of someone outside the team: 403, and the log line names the user.
    let stranger = unique_user("stranger");
    let r = Call::get(w, "/api/v1/cloud-providers")
        .bearer(&token(&stranger))
        .header("X-Team-ID", &team)
        .send();
    r.assert_error(403, "forbidden");
    let line = w.log_line_of(&r);
    assert_eq!(line["principal_kind"], "user");
    assert_eq!(line["principal_id"], stranger.as_str());
}

#[test]
fn team_member_and_key_changes_are_audited_with_their_subject() {
    let w = worker();
    let _log = w.on_failure();
    let owner = unique_user("owner");
    let team = new_team(w, &owner);
    let as_owner = |call: Call| {
        call.bearer(&token(&owner))
            .header("X-Team-ID", &team)
            .send()
    };
    let member = unique_user("member");
    let set = |role: &str| {
        as_owner(
            Call::put(w, &format!("/api/v1/team/members/{member}")).json(&json!({ "role": role })),
        )
    };
    let added = set("member");
    assert_eq!(added.status, 200);
    let changed = set("admin");
    assert_eq!(changed.status, 200);
    // A refused change writes nothing: an admin may not touch the owner.
    let refused = Call::put(w, &format!("/api/v1/team/members/{owner}"))
        .bearer(&token(&member))
        .header("X-Team-ID", &team)
        .json(&json!({"role": "member"}))
        .send();
    assert_eq!(refused.status, 403);
    let removed = as_owner(Call::delete(w, &format!("/api/v1/team/members/{member}")));
    assert_eq!(removed.status, 204);
    let key =
        as_owner(Call::post(w, "/api/v1/api-keys").json(&json!({"name": "k", "kind": "secret"})));
    let key_id = key.json()["id"].as_str().unwrap().to_string();
    let revoked = as_owner(Call::delete(w, &format!("/api/v1/api-keys/{key_id}")));
    assert_eq!(revoked.status, 200);
    assert_eq!(
        as_owner(Call::delete(w, &format!("/api/v1/api-keys/{key_id}"))).status,
        200,
        "revoking again is harmless"
    );

    let events = as_owner(Call::get(w, "/api/v1/audit-events")).json()["audit_events"].clone();
    let seen: Vec<(String, String, String)> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["subject"].as_str().unwrap_or("").to_string(),
                e["request_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let id = |r: &Reply| r.header("x-request-id").unwrap().to_string();
    assert_eq!(
        seen,
        [
            ("api_key.revoked".into(), key_id.clone(), id(&revoked)),
            ("api_key.created".into(), key_id.clone(), id(&key)),
            ("member.removed".into(), member.clone(), id(&removed)),
            ("member.role_changed".into(), member.clone(), id(&changed)),
            ("member.added".into(), member.clone(), id(&added)),
            (
                "team.created".into(),
                team.clone(),
                seen.last().unwrap().2.clone()
            ),
        ],
        "newest first, one event per change, none for a refusal or a repeat"
    );
    assert!(events
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["actor_id"] == owner.as_str()));

    // Filters: by action, and by time.
    let only = as_owner(Call::get(w, "/api/v1/audit-events?action=member.added")).json();
    assert_eq!(only["audit_events"].as_array().unwrap().len(), 1);
    let later = as_owner(Call::get(
        w,
        "/api/v1/audit-events?since=2999-01-01T00:00:00Z",
    ))
    .json();
    assert!(later["audit_events"].as_array().unwrap().is_empty());
    let earlier = as_owner(Call::get(
        w,
        "/api/v1/audit-events?until=2000-01-01T00:00:00Z",
    ))
    .json();
    assert!(earlier["audit_events"].as_array().unwrap().is_empty());
    as_owner(Call::get(w, "/api/v1/audit-events?action=nonsense"))
        .assert_error(400, "invalid_request");
}

#[test]
fn the_cron_deletes_audit_events_past_their_retention() {
    let w = spawn(Options::default().var("AUDIT_RETENTION_DAYS", "30"));
    let _log = w.on_failure();
    let owner = unique_user("owner");
    let team = new_team(&w, &owner);
    let old = 1_000_000_000_000u64; // 2001
    w.d1(&format!(
        "INSERT INTO audit_events (id, team_id, actor_kind, actor_id, action, created_at, request_id) \
         VALUES ('01000000-0000-7000-8000-000000000001', '{team}', 'user', 'x', 'member.added', {old}, 'r')"
    ));
    let count = || {
        w.d1(&format!(
            "SELECT COUNT(*) AS n FROM audit_events WHERE team_id = '{team}'"
        ))[0]["n"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(count(), 2, "team.created and the old one");
    w.run_cron();
    assert!(w.log_eventually_contains("\"job\":\"audit_retention\""));
    assert_eq!(count(), 1, "the old event is gone, the new one stays");
}

#[test]
fn four_hundred_fifty_keys_are_listed_page_by_page_each_exactly_once() {
    let w = worker();
    let _log = w.on_failure();
    let owner = unique_user("owner");
    let team = new_team(w, &owner);
    let call = |c: Call| c.bearer(&token(&owner)).header("X-Team-ID", &team).send();
    let ids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|t| {
                let call = &call;
                s.spawn(move || {
                    (0..75)
                        .map(|i| {
                            let r = call(
                                Call::post(w, "/api/v1/api-keys")
                                    .json(&json!({"name": format!("k{t}-{i}"), "kind": "device"})),
                            );
                            assert_eq!(r.status, 201, "{}", r.text);
                            r.json()["id"].as_str().unwrap().to_string()
                        })
                        .collect::<Vec<String>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(ids.len(), 450);

    let mut seen: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/api-keys?limit=100&cursor={c}"),
            None => "/api/v1/api-keys?limit=100".to_string(),
        };
        let page = call(Call::get(w, &path));
        assert_eq!(page.status, 200, "{}", page.text);
        let body = page.json();
        seen.extend(
            body["api_keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["id"].as_str().unwrap().to_string()),
        );
        pages += 1;
        // Between pages the team changes: a key is created and one of the listed is revoked.
        let created = call(
            Call::post(w, "/api/v1/api-keys").json(&json!({"name": "between", "kind": "device"})),
        );
        assert_eq!(created.status, 201);
        let victim = &ids[pages * 7];
        assert_eq!(
            call(Call::delete(w, &format!("/api/v1/api-keys/{victim}"))).status,
            200
        );
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 5, "450 keys in pages of 100");
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "no key was listed twice");
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(
        unique, expected,
        "every key of the 450 was listed once, the ones created meanwhile not at all"
    );
    call(Call::get(w, "/api/v1/api-keys?cursor=not-a-cursor")).assert_error(400, "invalid_request");
    call(Call::get(w, "/api/v1/api-keys?limit=201")).assert_error(400, "invalid_request");
}

#[test]
fn members_and_active_keys_per_team_are_capped() {
    let w = spawn(
        Options::default()
            .var("MAX_MEMBERS_PER_TEAM", "2")
            .var("MAX_ACTIVE_KEYS_PER_TEAM", "2"),
    );
    let _log = w.on_failure();
    let owner = unique_user("owner");
    let team = new_team(&w, &owner);
    let call = |c: Call| c.bearer(&token(&owner)).header("X-Team-ID", &team).send();
    let key = |name: &str| {
        call(Call::post(&w, "/api/v1/api-keys").json(&json!({"name": name, "kind": "secret"})))
    };
    let first = key("a");
    assert_eq!(first.status, 201);
    assert_eq!(key("b").status, 201);
    let third = key("c");
    third.assert_error(409, "conflict");
    assert!(
        third.message().contains("MAX_ACTIVE_KEYS_PER_TEAM"),
        "{}",
        third.message()
    );
    // A revoked key no longer counts.
    let id = first.json()["id"].as_str().unwrap().to_string();
    assert_eq!(
        call(Call::delete(&w, &format!("/api/v1/api-keys/{id}"))).status,
        200
    );
    assert_eq!(key("d").status, 201);

    add_member(&w, &owner, &team, &unique_user("second"), "member");
    let third = call(
        Call::put(
            &w,
            &format!("/api/v1/team/members/{}", unique_user("third")),
        )
        .json(&json!({"role": "member"})),
    );
    third.assert_error(409, "conflict");
    assert!(
        third.message().contains("MAX_MEMBERS_PER_TEAM"),
        "{}",
        third.message()
    );
    // Members and their pages: two, in one page of one and a second page.
    let page = call(Call::get(&w, "/api/v1/team/members?limit=1")).json();
    let next = page["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_string();
    let second = call(Call::get(
        &w,
        &format!("/api/v1/team/members?limit=1&cursor={next}"),
    ))
    .json();
    assert_eq!(second["members"].as_array().unwrap().len(), 1);
    assert_eq!(second["next_cursor"], serde_json::Value::Null);
    assert_ne!(
        page["members"][0]["user_id"],
        second["members"][0]["user_id"]
    );
}
