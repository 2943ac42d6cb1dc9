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

/// A team of `owner`'s for each plaintext, each storing it: the team ids, in order.
fn store_keys(w: &Worker, owner: &str, plaintexts: &[impl AsRef<str>]) -> Vec<String> {
    plaintexts
        .iter()
        .map(|p| {
            let team = new_team(w, owner);
            let r = Call::put(w, CREDENTIAL_PATH)
                .bearer(&token(owner))
                .header("X-Team-ID", &team)
                .json(&json!({ "api_key": p.as_ref() }))
                .send();
            assert_eq!(r.status, 200, "{}", r.text);
            team
        })
        .collect()
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
    let teams = store_keys(&first, &owner, &plaintexts);
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

/// `scripts/key-usage.sh --local` against a worker's D1: rows per key id, and the cursor.
fn key_usage(w: &Worker) -> Vec<String> {
    let out = std::process::Command::new("bash")
        .arg(std::path::Path::new(ROOT).join("scripts/key-usage.sh"))
        .args(["--local", "--persist-to"])
        .arg(&w.state_dir)
        .output()
        .expect("run scripts/key-usage.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Rotates twice, each time over more rows than a run re-seals (batches of 2, one batch a
/// run), behind a row that can never be opened. Each run resumes where the last stopped, so
/// the bad row never holds the others back, and an operator can watch the counts fall.
#[test]
fn rotation_resumes_across_runs_and_rotates_twice() {
    let plaintexts: Vec<String> = (0..5)
        .map(|i| format!("comfyui-resume-{i}-0123456789abcdef"))
        .collect();
    let owner = unique_user("owner");
    let first = spawn(Options::default().var("CREDENTIAL_KEYS", &ring("k1", &[("k1", 1)])));
    let log1 = first.on_failure();
    let mut teams = store_keys(&first, &owner, &plaintexts[..]);
    teams.sort();
    // First in the job's order: a row under a key no ring holds.
    let bad = "00000000-0000-7000-8000-000000000000";
    first.d1(&format!(
        "INSERT INTO teams (id, name, created_at) VALUES ('{bad}', 'lost key', 1); \
         INSERT INTO credentials (team_id, provider, status, cloud_fallback, ciphertext, key_id, key_preview, created_at, updated_at, version) \
         VALUES ('{bad}', 'comfy_cloud', 'active', 0, 'v1.k0.AAAA', 'k0', 'x...y', 1, 1, 1)"
    ));
    let state = first.state_dir.clone();
    drop(log1);
    first.stop();

    let small_runs = |active: &str, ids: &[(&str, u8)]| {
        spawn(Options {
            state_dir: Some(state.clone()),
            ..Options::default()
                .var("CREDENTIAL_KEYS", &ring(active, ids))
                .var("ROTATION_BATCH_SIZE", "2")
                .var("ROTATION_MAX_BATCHES", "1")
        })
    };
    let count_under = |w: &Worker, key_id: &str| {
        w.d1(&format!(
            "SELECT COUNT(*) AS n FROM credentials WHERE key_id = '{key_id}'"
        ))[0]["n"]
            .as_u64()
            .unwrap()
    };

    for (from, to, ids) in [
        ("k1", "k2", vec![("k1", 1), ("k2", 2)]),
        ("k2", "k3", vec![("k2", 2), ("k3", 3)]),
    ] {
        let w = small_runs(to, &ids);
        let _log = w.on_failure();
        // Run 1: the bad row and the first good one; the cursor stops after that one.
        w.run_cron();
        assert_eq!((count_under(&w, from), count_under(&w, to)), (4, 1));
        assert_eq!(
            key_usage(&w),
            [
                "k0 1".to_string(),
                format!("{from} 4"),
                format!("{to} 1"),
                format!("cursor {to} {} comfy_cloud", teams[0]),
            ]
        );
        // Runs 2 and 3 resume after it, two rows each; run 4 finds the end and clears it.
        w.run_cron();
        assert_eq!((count_under(&w, from), count_under(&w, to)), (2, 3));
        w.run_cron();
        assert_eq!((count_under(&w, from), count_under(&w, to)), (0, 5));
        w.run_cron();
        assert_eq!(
            key_usage(&w),
            ["k0 1".to_string(), format!("{to} 5"), "cursor none".into()]
        );
        // The log is printed asynchronously: wait for the fourth run's line.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while w.log().matches(r#""job":"reencrypt_credentials""#).count() < 4
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let reports: Vec<serde_json::Value> = w
            .log()
            .lines()
            .filter(|l| l.contains(r#""job":"reencrypt_credentials""#))
            .map(|l| serde_json::from_str(&l[l.find('{').unwrap()..]).unwrap())
            .collect();
        let seen: Vec<(u64, u64, bool, bool)> = reports
            .iter()
            .map(|r| {
                (
                    r["reencrypted"].as_u64().unwrap(),
                    r["failed"].as_u64().unwrap(),
                    r["resumed"].as_bool().unwrap(),
                    r["complete"].as_bool().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (1, 1, false, false),
                (2, 0, true, false),
                (2, 0, true, false),
                (0, 0, true, true)
            ]
        );
        // Every key still opens, under the new key only; the bad row is as it was.
        let only_new = KeyRing::from_config(&ring(to, &[ids[1]])).unwrap();
        for (team, plaintext) in teams.iter().zip(&plaintexts) {
            let row = &w.d1(&format!(
                "SELECT ciphertext FROM credentials WHERE team_id = '{team}'"
            ))[0];
            let opened = only_new
                .open(
                    row["ciphertext"].as_str().unwrap(),
                    &credential_aad(team, "comfy_cloud"),
                )
                .unwrap();
            assert_eq!(&String::from_utf8(opened).unwrap(), plaintext);
        }
        assert_eq!(
            w.d1(&format!(
                "SELECT ciphertext FROM credentials WHERE team_id = '{bad}'"
            ))[0]["ciphertext"],
            "v1.k0.AAAA"
        );
        w.stop();
    }
}
