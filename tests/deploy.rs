//! The deploy runbook's command works offline: `scripts/deploy.sh <env> --dry-run` bundles
//! each environment with its own D1 database and both Durable Object bindings, and says which
//! secrets and migrations a real deploy checks and applies.

use std::process::Command;

fn dry_run(env: &str) -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    let outdir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("deploy-{env}"));
    let out = Command::new("bash")
        .current_dir(root)
        .args(["scripts/deploy.sh", env, "--dry-run"])
        .env("DEPLOY_OUTDIR", &outdir)
        .envs([
            ("CI", "true"),
            ("WRANGLER_SEND_METRICS", "false"),
            ("NO_COLOR", "1"),
        ])
        .output()
        .expect("run scripts/deploy.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "dry run for {env} failed:\n{text}");
    assert!(outdir.join("index.js").exists(), "no bundle in {outdir:?}");
    text
}

#[test]
fn a_wrong_environment_is_refused() {
    let out = Command::new("bash")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["scripts/deploy.sh", "development", "--dry-run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "usage error");
}

#[test]
fn staging_and_production_deploy_with_their_own_bindings() {
    for env in ["staging", "production"] {
        let text = dry_run(env);
        assert!(
            text.contains(&format!("edge-credentials-{env}")),
            "{env} must use its own D1 database:\n{text}"
        );
        assert!(text.contains("RATE_LIMITER"), "{text}");
        assert!(text.contains("AGENT_PRESENCE"), "{text}");
        // The settings page's static assets deploy with the worker in every environment.
        assert!(text.contains("env.ASSETS"), "{text}");
        assert!(
            text.contains(
                "would check these secrets exist: CREDENTIAL_KEYS JWT_SECRET or JWT_JWKS"
            ),
            "{text}"
        );
        assert!(
            text.contains("0001_initial.sql") && text.contains("0004_team_lifecycle.sql"),
            "the migrations a deploy applies:\n{text}"
        );
        assert!(
            text.contains("placeholder id"),
            "the unfilled database id is flagged:\n{text}"
        );
        assert!(
            text.contains("nothing is contacted and nothing is deployed"),
            "{text}"
        );
        assert!(
            text.contains(&format!("\"{env}\"")),
            "ENVIRONMENT var:\n{text}"
        );
    }
}
