//! Rotating CREDENTIAL_KEYS: old rows stay readable, the cron job re-seals them under the
//! new key, nothing is lost, and running it again changes nothing.

use crate::support::*;
use base64ct::{Base64, Encoding};
use edge_credentials::core::crypto::{credential_aad, KeyRing};
use serde_json::json;

fn key(byte: u8) -> String {
    Base64::encode_string(&[byte; 32])
}

fn ring(active: &str, ids: &[(&str, u8)]) -> String {
    let keys: serde_json::Map<String, serde_json::Value> = ids
        .iter()
        .map(|(id, b)| (id.to_string(), json!(key(*b))))
        .collect();
    json!({"active": active, "keys": keys}).to_string()
}

#[test]
fn rotation_reencrypts_under_the_new_key_and_loses_nothing() {
    let plaintexts = [
        "comfyui-rotation-one-0000000000000000000",
        "comfyui-rotation-two-11111111111111111",
        "comfyui-rotation-three-222222222222222",
    ];
    let path = "/api/v1/cloud-providers/comfy-cloud";
    let owner = unique_user("owner");

    // Key 1 only: three teams store a key each.
    let first = spawn(Options::default().var("CREDENTIAL_KEYS", &ring("k1", &[("k1", 1)])));
    let log1 = first.on_failure();
    let teams: Vec<String> = plaintexts
        .iter()
        .map(|p| {
            let team = new_team(&first, &owner);
            let r = Call::put(&first, path)
                .bearer(&token(&owner))
                .header("X-Team-ID", &team)
                .json(&json!({ "api_key": p }))
                .send();
            assert_eq!(r.status, 200, "{}", r.text);
            team
        })
        .collect();
    let before = first.d1("SELECT team_id, key_id, ciphertext, key_preview, version FROM credentials ORDER BY team_id");
    assert!(before.iter().all(|r| r["key_id"] == "k1"));
    let state = first.state_dir.clone();
    drop(log1);
    first.stop();

    // Restarted with key 2 active and key 1 still in the ring; batches of one row, so a
    // run walks the rows with its cursor over several batches.
    let second = spawn(Options {
        state_dir: Some(state),
        ..Options::default()
            .var("CREDENTIAL_KEYS", &ring("k2", &[("k1", 1), ("k2", 2)]))
            .var("ROTATION_BATCH_SIZE", "1")
    });
    let _log2 = second.on_failure();
    let get = |w: &Worker, team: &str| {
        Call::get(w, path)
            .bearer(&token(&owner))
            .header("X-Team-ID", team)
            .send()
    };
    let etags: Vec<String> = teams
        .iter()
        .map(|t| {
            let r = get(&second, t);
            assert_eq!(r.status, 200, "still readable before rotation: {}", r.text);
            r.header("etag").unwrap().to_string()
        })
        .collect();
    second.run_cron();
    let after = second.d1("SELECT team_id, key_id, ciphertext, key_preview, version FROM credentials ORDER BY team_id");
    let only_k2 = KeyRing::from_config(&ring("k2", &[("k2", 2)])).unwrap();
    let only_k1 = KeyRing::from_config(&ring("k1", &[("k1", 1)])).unwrap();
    for (old, new) in before.iter().zip(&after) {
        assert_eq!(new["key_id"], "k2");
        let blob = new["ciphertext"].as_str().unwrap();
        assert!(blob.starts_with("v1.k2."));
        let aad = credential_aad(new["team_id"].as_str().unwrap(), "comfy_cloud");
        let opened = String::from_utf8(only_k2.open(blob, &aad).unwrap()).unwrap();
        let original = String::from_utf8(
            only_k1
                .open(old["ciphertext"].as_str().unwrap(), &aad)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(opened, original, "the same key, now under key 2");
        assert!(
            only_k1.open(blob, &aad).is_err(),
            "key 1 no longer opens it"
        );
        assert_eq!(new["key_preview"], old["key_preview"]);
        assert_eq!(
            new["version"], old["version"],
            "re-encryption is not a change of the credential"
        );
    }
    let mut recovered: Vec<String> = after
        .iter()
        .map(|r| {
            let aad = credential_aad(r["team_id"].as_str().unwrap(), "comfy_cloud");
            String::from_utf8(
                only_k2
                    .open(r["ciphertext"].as_str().unwrap(), &aad)
                    .unwrap(),
            )
            .unwrap()
        })
        .collect();
    recovered.sort();
    let mut expected: Vec<String> = plaintexts.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(recovered, expected, "nothing lost");
    for (team, etag) in teams.iter().zip(&etags) {
        assert_eq!(get(&second, team).header("etag"), Some(etag.as_str()));
    }
    let audit =
        second.d1("SELECT COUNT(*) AS n FROM audit_events WHERE action = 'credential.reencrypt'");
    assert_eq!(audit[0]["n"], 3);
    assert!(
        second.log_eventually_contains(r#""reencrypted":3,"skipped":0,"failed":0,"complete":true"#),
        "{}",
        second.log()
    );

    // Idempotent: a second run finds nothing to do and changes nothing.
    second.run_cron();
    assert_eq!(
        second.d1("SELECT team_id, key_id, ciphertext, key_preview, version FROM credentials ORDER BY team_id"),
        after
    );
    assert!(second.log_eventually_contains(r#""reencrypted":0"#));
}

#[test]
fn get_never_decrypts_and_a_missing_old_key_loses_nothing() {
    let path = "/api/v1/cloud-providers/comfy-cloud";
    let owner = unique_user("owner");
    let first = spawn(Options::default().var("CREDENTIAL_KEYS", &ring("k1", &[("k1", 1)])));
    let log1 = first.on_failure();
    let team = new_team(&first, &owner);
    let put = Call::put(&first, path)
        .bearer(&token(&owner))
        .header("X-Team-ID", &team)
        .json(&json!({"api_key": "comfyui-kept-safe-000000000000000000000"}))
        .send();
    assert_eq!(put.status, 200, "{}", put.text);
    let before = first.d1("SELECT * FROM credentials");
    drop(log1);
    first.stop();

    // A ring that cannot open the row: GET still answers (it never decrypts), writes still
    // work, and the rotation job reports the row and leaves it exactly as it was.
    let second = spawn(Options {
        state_dir: Some(first.state_dir.clone()),
        ..Options::default().var("CREDENTIAL_KEYS", &ring("k9", &[("k9", 9)]))
    });
    let _log2 = second.on_failure();
    let got = Call::get(&second, path)
        .bearer(&token(&owner))
        .header("X-Team-ID", &team)
        .send();
    assert_eq!(got.status, 200, "{}", got.text);
    assert_eq!(got.json(), put.json());
    second.run_cron();
    assert!(
        second.log_eventually_contains(r#""failed":1"#),
        "{}",
        second.log()
    );
    assert_eq!(second.d1("SELECT * FROM credentials"), before, "untouched");
}
