//! The D1 schema over time, on SQLite itself (`tests/schema_check.py`, Python's standard
//! `sqlite3`; D1 is SQLite): the migrations give exactly `schema.sql`, and a database filled
//! at `0001` upgrades without losing a row or a key. The e2e harness applies the same files
//! with `wrangler d1 migrations apply` to every worker it starts.

use std::{path::Path, process::Command};

use edge_credentials::core::crypto::{credential_aad, KeyRing};
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// A test key ring (not the dev one): 32 bytes of 0x11.
const RING: &str =
    r#"{"active":"t1","keys":{"t1":"ERERERERERERERERERERERERERERERERERERERERERE="}}"#;

fn check(args: &[&str]) -> Value {
    let out = Command::new("python3")
        .arg(Path::new(ROOT).join("tests/schema_check.py"))
        .args(args)
        .output()
        .expect("python3 (with its standard sqlite3 module) is needed");
    assert!(
        out.status.success(),
        "schema_check.py {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from schema_check.py")
}

#[test]
fn every_migration_applied_gives_exactly_schema_sql() {
    let both = check(&["compare", ROOT]);
    let (migrated, written) = (&both["migrations"], &both["schema"]);
    // What a difference would look like is printed table by table.
    let tables: Vec<&String> = written.as_object().unwrap().keys().collect();
    for table in &tables {
        assert_eq!(
            migrated[table.as_str()],
            written[table.as_str()],
            "table {table}: migrations/ (left) and schema.sql (right) differ"
        );
    }
    assert_eq!(migrated, written, "a table exists on one side only");
    // And it is the schema this code reads: the columns migration 0002 added are there,
    // with their check.
    let credentials = &written["credentials"];
    let columns: Vec<&str> = credentials["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c[0].as_str().unwrap())
        .collect();
    for column in [
        "verification_state",
        "verification_checked_at",
        "verification_reason",
        "last_used_at",
    ] {
        assert!(columns.contains(&column), "{column} in {columns:?}");
    }
    assert!(credentials["checks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c.as_str().unwrap().contains("verification_state in")));
}

#[test]
fn a_database_at_0001_upgrades_without_losing_a_row_or_a_key() {
    let ring = KeyRing::from_config(RING).unwrap();
    let teams = [
        "01a00000-0000-7000-8000-000000000001",
        "01a00000-0000-7000-8000-000000000002",
        "01a00000-0000-7000-8000-000000000003",
    ];
    let plaintexts = [
        "comfyui-upgrade-one-0123456789",
        "comfyui-upgrade-two-9876543210",
    ];
    let mut sql = String::new();
    for (i, team) in teams.iter().enumerate() {
        sql += &format!(
            "INSERT INTO teams (id, name, created_at) VALUES ('{team}', 'team {i}', {});\n\
             INSERT INTO team_members (team_id, user_id, role, added_at) VALUES ('{team}', 'owner-{i}', 'owner', 1);\n\
             INSERT INTO api_keys (id, team_id, name, kind, key_hash, key_preview, scopes, created_by, created_at) \
               VALUES ('key-{i}', '{team}', 'k', 'secret', 'hash-{i}', 'sk-abcde...wxyz', 'cloud_providers:read cloud_providers:write', 'owner-{i}', 2);\n\
             INSERT INTO audit_events (id, team_id, actor_kind, actor_id, action, provider, created_at, request_id) \
               VALUES ('ev-{i}', '{team}', 'user', 'owner-{i}', 'credential.put', 'comfy_cloud', 3, 'req-{i}');\n",
            1_750_000_000_000u64 + i as u64
        );
    }
    // Two active credentials (sealed) and one revoked (no ciphertext).
    for (team, plaintext) in teams.iter().zip(plaintexts) {
        let sealed = ring.seal(plaintext.as_bytes(), &credential_aad(team, "comfy_cloud"));
        sql += &format!(
            "INSERT INTO credentials (team_id, provider, status, cloud_fallback, ciphertext, key_id, key_preview, created_at, updated_at, version) \
             VALUES ('{team}', 'comfy_cloud', 'active', 1, '{sealed}', 't1', 'comfyui-...6789', 10, 20, 4);\n"
        );
    }
    sql += &format!(
        "INSERT INTO credentials (team_id, provider, status, cloud_fallback, ciphertext, key_id, key_preview, created_at, updated_at, version) \
         VALUES ('{}', 'comfy_cloud', 'revoked', 0, NULL, NULL, 'comfyui-...0000', 10, 30, 7);\n",
        teams[2]
    );
    let fixtures =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("upgrade-{}.sql", std::process::id()));
    std::fs::write(&fixtures, sql).unwrap();
    let dump = check(&["upgrade", ROOT, fixtures.to_str().unwrap()]);
    assert!(
        dump["_migrations"].as_array().unwrap().len() >= 2,
        "there is something to upgrade to: {}",
        dump["_migrations"]
    );

    for table in [
        "teams",
        "team_members",
        "api_keys",
        "audit_events",
        "credentials",
    ] {
        assert_eq!(
            dump[table].as_array().unwrap().len(),
            3,
            "{table}: every row is still there"
        );
    }
    let credentials = dump["credentials"].as_array().unwrap();
    for (team, plaintext) in teams.iter().zip(plaintexts) {
        let row = credentials.iter().find(|r| r["team_id"] == *team).unwrap();
        let opened = ring
            .open(
                row["ciphertext"].as_str().unwrap(),
                &credential_aad(team, "comfy_cloud"),
            )
            .expect("the stored key still decrypts");
        assert_eq!(String::from_utf8(opened).unwrap(), plaintext);
        // Untouched columns, and what 0002 says of a key stored before verification existed.
        assert_eq!(
            (
                row["status"].as_str(),
                row["version"].as_i64(),
                row["cloud_fallback"].as_i64()
            ),
            (Some("active"), Some(4), Some(1))
        );
        assert_eq!(row["verification_state"], "unverified");
        assert_eq!(row["verification_reason"], "not_checked");
        assert_eq!(row["verification_checked_at"], Value::Null);
        assert_eq!(row["last_used_at"], Value::Null);
    }
    let revoked = credentials
        .iter()
        .find(|r| r["team_id"] == teams[2])
        .unwrap();
    assert_eq!(
        (revoked["status"].as_str(), revoked["ciphertext"].is_null()),
        (Some("revoked"), true)
    );
    assert_eq!(dump["schema_version"][0]["version"], 4);
    // Teams from before 0004 are at version 1 and not deleted.
    assert!(dump["teams"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["version"] == 1 && t["deleted_at"].is_null()));
    // Events from before 0003 have no subject; nothing else about them changed.
    let events = dump["audit_events"].as_array().unwrap();
    assert!(events
        .iter()
        .all(|e| e["subject"].is_null() && e["action"] == "credential.put"));
}
