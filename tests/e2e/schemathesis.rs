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

# Re-checking needs a stored, active key: without one it is 404 or 409.
[[operations]]
include-operation-id = "verifyCredential"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "429"]

# `expires_at` must be in the future, which a schema cannot say: a past one is 400.
[[operations]]
include-operation-id = "createApiKey"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429"]
"#;

/// Members are managed in a second team, by its own owner: schemathesis reuses the user ids
/// it reads (`GET /api/v1/team/members`), so it adds a second owner and then demotes or
/// removes the caller, as the contract allows. That must not cost the other operations their
/// owner. These headers take precedence over the `-H` ones for these operations.
fn members_config(token: &str, team: &str) -> String {
    format!(
        r#"
[[operations]]
include-operation-id = ["listMembers", "setMember", "removeMember"]
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
    let members = members_config(&token(&members_owner), &members_team);
    std::fs::write(&config, format!("{CONFIG}{members}")).unwrap();

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
