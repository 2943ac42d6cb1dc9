//! A team's life: read with its ETag, renamed by its managers, deleted by an owner. After a
//! delete, nothing of the team is usable: its keys get 401, its members' tokens 404, its
//! ciphertexts are gone, and its audit trail stays.

use crate::support::*;
use serde_json::json;

const TEAM: &str = "/api/v1/team";

fn as_user<'w>(user: &str, team: &str, call: Call<'w>) -> Call<'w> {
    call.bearer(&token(user)).header("X-Team-ID", team)
}

#[test]
fn managers_rename_the_team_under_its_etag() {
    let w = worker();
    let _log = w.on_failure();
    let team = Team::new(w);
    let (admin, member) = (unique_user("admin"), unique_user("member"));
    add_member(w, &team.owner, &team.id, &admin, "admin");
    add_member(w, &team.owner, &team.id, &member, "member");

    let read = as_user(&member, &team.id, Call::get(w, TEAM)).send();
    assert_eq!(read.status, 200, "{}", read.text);
    assert_eq!(read.json()["role"], "member");
    assert_eq!(read.json()["id"], team.id.as_str());
    let etag = read.header("etag").unwrap().to_string();

    let rename = |user: &str, name: &str, if_match: Option<&str>| {
        let call = as_user(user, &team.id, Call::patch(w, TEAM)).json(&json!({ "name": name }));
        match if_match {
            Some(tag) => call.header("If-Match", tag).send(),
            None => call.send(),
        }
    };
    rename(&member, "by a member", None).assert_error(403, "forbidden");
    let key = team.key(w, json!({"name": "ci", "kind": "secret"}));
    Call::patch(w, TEAM)
        .bearer(&key)
        .json(&json!({"name": "by a key"}))
        .send()
        .assert_error(403, "forbidden");
    rename(&admin, " ", None).assert_error(400, "invalid_request");

    let renamed = rename(&admin, "Render farm", Some(&etag));
    assert_eq!(renamed.status, 200, "{}", renamed.text);
    assert_eq!(renamed.json()["name"], "Render farm");
    assert_eq!(renamed.json()["role"], "admin");
    let new_etag = renamed.header("etag").unwrap().to_string();
    assert_ne!(new_etag, etag, "a rename changes the ETag");
    // The old ETag is stale now; `*` matches the team that exists.
    let stale = rename(&team.owner, "stale", Some(&etag));
    stale.assert_error(412, "precondition_failed");
    let any = rename(&team.owner, "Render farm 2", Some("*"));
    assert_eq!(any.status, 200, "{}", any.text);

    let listed = as_user(&team.owner, &team.id, Call::get(w, "/api/v1/teams")).send();
    assert!(listed.json()["teams"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["id"] == team.id.as_str() && t["name"] == "Render farm 2"));
    // Two renames, each audited with the team as subject; the refused ones wrote nothing.
    let audit = as_user(
        &team.owner,
        &team.id,
        Call::get(w, "/api/v1/audit-events?action=team.renamed"),
    )
    .send();
    let events = audit.json()["audit_events"].as_array().unwrap().clone();
    assert_eq!(events.len(), 2, "{}", audit.text);
    assert!(events
        .iter()
        .all(|e| e["subject"] == team.id.as_str() && e["actor_kind"] == "user"));
}

#[test]
fn a_deleted_team_leaves_no_usable_key_member_or_ciphertext() {
    let w = worker();
    let _log = w.on_failure();
    let team = Team::new(w);
    let admin = unique_user("admin");
    add_member(w, &team.owner, &team.id, &admin, "admin");
    let put = team.put(w, json!({"api_key": "comfyui-lifecycle-doomed-0123456789"}));
    assert_eq!(put.status, 200, "{}", put.text);
    let sk = team.key(w, json!({"name": "ci", "kind": "secret"}));
    let dk = team.key(w, json!({"name": "gpu", "kind": "device"}));
    assert_eq!(Call::get(w, CREDENTIAL_PATH).bearer(&sk).send().status, 200);
    // Another team, which must not notice.
    let other = Team::new(w);
    let other_put = other.put(w, json!({"api_key": "comfyui-lifecycle-bystander-0123456"}));
    assert_eq!(other_put.status, 200, "{}", other_put.text);
    let other_sk = other.key(w, json!({"name": "ci", "kind": "secret"}));

    let delete = |user: &str, if_match: Option<&str>| {
        let call = as_user(user, &team.id, Call::delete(w, TEAM));
        match if_match {
            Some(tag) => call.header("If-Match", tag).send(),
            None => call.send(),
        }
    };
    delete(&admin, None).assert_error(403, "forbidden");
    Call::delete(w, TEAM)
        .bearer(&sk)
        .send()
        .assert_error(403, "forbidden");
    delete(&team.owner, Some("\"999\"")).assert_error(412, "precondition_failed");
    assert_eq!(team.row(w)["status"], "active", "refusals changed nothing");

    let etag = as_user(&team.owner, &team.id, Call::get(w, TEAM))
        .send()
        .header("etag")
        .unwrap()
        .to_string();
    let deleted = delete(&team.owner, Some(&etag));
    assert_eq!(deleted.status, 204, "{}", deleted.text);

    // Keys: 401, whatever they try. Tokens naming the team: 404.
    Call::get(w, CREDENTIAL_PATH)
        .bearer(&sk)
        .send()
        .assert_error(401, "unauthorized");
    Call::post(w, "/api/v1/agents/heartbeat")
        .bearer(&dk)
        .send()
        .assert_error(401, "unauthorized");
    for user in [&team.owner, &admin] {
        for call in [
            Call::get(w, TEAM),
            Call::get(w, CREDENTIAL_PATH),
            Call::get(w, "/api/v1/api-keys"),
            Call::get(w, "/api/v1/audit-events"),
            Call::delete(w, TEAM),
        ] {
            let r = as_user(user, &team.id, call).send();
            r.assert_error(404, "not_found");
            assert_eq!(r.message(), "This team has been deleted");
        }
    }
    let teams = Call::get(w, "/api/v1/teams")
        .bearer(&token(&team.owner))
        .send();
    assert_eq!(teams.json()["teams"], json!([]), "{}", teams.text);

    // In D1: a tombstone, no member, no credential row, every key revoked, the audit kept.
    let id = &team.id;
    let tomb = &w.d1(&format!("SELECT deleted_at FROM teams WHERE id = '{id}'"))[0];
    assert!(tomb["deleted_at"].is_number());
    let count = |sql: &str| w.d1(sql)[0]["n"].as_u64().unwrap();
    assert_eq!(
        count(&format!(
            "SELECT COUNT(*) AS n FROM team_members WHERE team_id = '{id}'"
        )),
        0
    );
    assert_eq!(
        count(&format!(
            "SELECT COUNT(*) AS n FROM credentials WHERE team_id = '{id}'"
        )),
        0
    );
    assert_eq!(
        count(&format!(
            "SELECT COUNT(*) AS n FROM api_keys WHERE team_id = '{id}' AND revoked_at IS NULL"
        )),
        0
    );
    assert_eq!(
        count(&format!(
            "SELECT COUNT(*) AS n FROM api_keys WHERE team_id = '{id}'"
        )),
        2
    );
    let actions: Vec<String> = w
        .d1(&format!(
            "SELECT action, subject FROM audit_events WHERE team_id = '{id}' ORDER BY id"
        ))
        .iter()
        .map(|e| format!("{}:{}", e["action"].as_str().unwrap(), e["subject"]))
        .collect();
    assert!(actions.iter().any(|a| a.starts_with("credential.put")));
    assert_eq!(
        actions.last().unwrap(),
        &format!("team.deleted:\"{id}\""),
        "{actions:?}"
    );

    // The other team is untouched.
    let r = Call::get(w, CREDENTIAL_PATH).bearer(&other_sk).send();
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(other.decrypted(w), "comfyui-lifecycle-bystander-0123456");
    // A stranger to the team (never a member) is still told 403, as before.
    let stranger = unique_user("stranger");
    as_user(&stranger, &other.id, Call::get(w, TEAM))
        .send()
        .assert_error(403, "forbidden");
}
