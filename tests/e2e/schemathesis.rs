//! schemathesis (pinned, installed into `.venv/` by scripts/setup.sh) against a worker of its
//! own, from the document that worker serves at `/openapi.json`: every check, every phase
//! (examples, coverage, fuzzing, and the stateful phase along the document's links), a fixed
//! seed and a bounded number of cases per operation, as the owner of a fresh team.

use crate::support::*;
use std::{path::Path, process::Command, time::Instant};

/// Per-operation settings, each for a rule JSON Schema cannot state. No check is disabled.
const CONFIG: &str = r#"
# A well-formed `If-Match` that names no current ETag is answered 412 (RFC 9110): valid input
# refused by the resource's state, like the 409 schemathesis already accepts.
[[operations]]
include-operation-id = ["patchCredential", "deleteCredential"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "412", "429"]

# Whether ComfyUI Cloud accepts a key is the provider's to say: the stub refuses the keys it
# was not given (422), which no schema can predict.
[[operations]]
include-operation-id = "putCredential"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "412", "422", "429"]

# Heartbeats are for device keys only: schemathesis calls as a JWT owner, which is 403.
[[operations]]
include-operation-id = "agentHeartbeat"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "429"]

# With no agent and no fallback, no compute is available: 503 no_compute_available is the
# decision itself (the contract's own status for it). Any other 5xx still fails.
[[operations]]
include-operation-id = "routeTask"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "429", "503"]
checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "503"]

# A cursor is opaque: only one the API issued is accepted, which no schema can say (400).
[[operations]]
include-operation-id = ["listTeams", "listMembers", "listApiKeys", "listCredentials", "listAgents"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "429"]

# Re-checking needs a stored, active key: without one it is 404 or 409.
[[operations]]
include-operation-id = "verifyCredential"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "429"]

# The team's own operations run on a third team (below), which deleteTeam may delete: then
# the team is gone (404), and an If-Match naming no current ETag is 412.
[[operations]]
include-operation-id = ["getTeam", "renameTeam", "deleteTeam"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "412", "429"]

# `expires_at` must be in the future, which a schema cannot say: a past one is 400.
[[operations]]
include-operation-id = "createApiKey"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429"]
"#;

/// Members are managed in a second team, by its own owner: schemathesis reuses the user ids
/// it reads (`GET /api/v1/team/members`), so it adds a second owner and then demotes or
/// removes the caller, as the contract allows. That must not cost the other operations their
/// owner. These headers take precedence over the `-H` ones for these operations.
/// The team's own operations (rename, delete) run on a third team for the same reason.
fn own_team_config(operations: &str, token: &str, team: &str) -> String {
    format!(
        r#"
[[operations]]
include-operation-id = {operations}
headers = {{ Authorization = "Bearer {token}", X-Team-ID = "{team}" }}
"#
    )
}

#[test]
fn the_worker_conforms_to_its_openapi_document() {
    let schemathesis = Path::new(ROOT).join(".venv/bin/schemathesis");
    assert!(
        schemathesis.exists(),
        "schemathesis is not installed: run ./scripts/setup.sh"
    );
    let w = spawn(Options::default());
    let _log = w.on_failure();
    let owner = unique_user("schemathesis");
    let team = new_team(&w, &owner);
    let members_owner = unique_user("schemathesis-members");
    let members_team = new_team(&w, &members_owner);

    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("schemathesis-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("schemathesis.toml");
    let members = own_team_config(
        r#"["listMembers", "setMember", "removeMember"]"#,
        &token(&members_owner),
        &members_team,
    );
    let lifecycle_owner = unique_user("schemathesis-lifecycle");
    let lifecycle_team = new_team(&w, &lifecycle_owner);
    let lifecycle = own_team_config(
        r#"["getTeam", "renameTeam", "deleteTeam"]"#,
        &token(&lifecycle_owner),
        &lifecycle_team,
    );
    std::fs::write(&config, format!("{CONFIG}{members}{lifecycle}")).unwrap();

    let started = Instant::now();
    let out = Command::new(&schemathesis)
        .current_dir(&dir)
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("{}/openapi.json", w.base_url))
        .args(["--checks", "all"])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--max-examples", "50", "--seed", "20261123"])
        // One worker: the machine has two cores and wrangler needs one. The time limits are
        // generous because the machine is shared: a loaded local D1 write can take seconds.
        .args([
            "--workers",
            "1",
            "--request-timeout",
            "60",
            "--max-response-time",
            "30",
        ])
        .args(["--generation-database", "none", "--no-color"])
        // The proxy relays whatever ComfyUI Cloud answers, which this document cannot describe
        // beyond "relayed"; tests/e2e/proxy.rs covers it against the stub.
        .args(["--exclude-tag", "proxy"])
        .arg("-H")
        .arg(format!("Authorization: Bearer {}", token(&owner)))
        .arg("-H")
        .arg(format!("X-Team-ID: {team}"))
        .env("NO_COLOR", "1")
        .output()
        .expect("run schemathesis");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::write(dir.join("output.txt"), &text);
    let summary = text
        .find("= SUMMARY =")
        .map(|i| &text[text[..i].rfind('\n').map_or(0, |l| l + 1)..])
        .unwrap_or("(no summary)");
    println!(
        "schemathesis finished in {:.0?}:\n{summary}",
        started.elapsed()
    );
    assert!(
        out.status.success(),
        "schemathesis failed ({}):\n{text}",
        out.status
    );
}

/// openapi-python-client (pinned, in `.venv/`) generates a client from the document the
/// worker serves, with no warning, and that client drives the seed flow.
#[test]
fn a_generated_client_drives_the_seed_flow() {
    let generator = Path::new(ROOT).join(".venv/bin/openapi-python-client");
    assert!(
        generator.exists(),
        "openapi-python-client is not installed: run ./scripts/setup.sh"
    );
    let w = worker();
    let _log = w.on_failure();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("generated-client-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let served = Call::get(w, "/openapi.json").send();
    assert_eq!(served.status, 200);
    std::fs::write(dir.join("openapi.json"), &served.text).unwrap();
    // No post-hooks: formatting the output (ruff) is not part of what is checked here.
    std::fs::write(dir.join("config.yaml"), "post_hooks: []\n").unwrap();
    let out = Command::new(&generator)
        .current_dir(&dir)
        .args([
            "generate",
            "--path",
            "openapi.json",
            "--output-path",
            "client",
        ])
        .args(["--config", "config.yaml", "--overwrite"])
        .output()
        .expect("run openapi-python-client");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "generation failed:\n{text}");
    assert!(
        !text.to_lowercase().contains("warning"),
        "the generator warned:\n{text}"
    );

    let team = Team::new(w);
    let sk = team.key(w, serde_json::json!({"name": "gen", "kind": "secret"}));
    let provider_key = format!("comfyui-generated-{}", unique_user("k").replace('-', "x"));
    plaintexts::watch(&provider_key);
    stub().allow(&provider_key);
    let out = Command::new(Path::new(ROOT).join(".venv/bin/python"))
        .arg(Path::new(ROOT).join("tests/e2e/generated/seed_flow.py"))
        .arg(dir.join("client"))
        .arg(&w.base_url)
        .arg(&sk)
        .arg(token(&team.owner))
        .arg(&team.id)
        .arg(&provider_key)
        .output()
        .expect("run the generated client");
    assert!(
        out.status.success(),
        "the generated client failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(
        seen,
        serde_json::json!({
            "put": [200, "active", "verified"],
            "get": [200, edge_credentials::core::credentials::preview(&provider_key)],
            "delete": [200, "revoked", false],
            "create": [201, "sk-"],
            "revoke": [200, true],
        })
    );
}
