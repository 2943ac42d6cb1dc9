//! The config deploys: `wrangler deploy --dry-run` bundles each environment offline, with
//! its own D1 database and the Durable Object binding.

use std::process::Command;

fn dry_run(env: &str) -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    let outdir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("deploy-{env}"));
    let out = Command::new(format!("{root}/node_modules/.bin/wrangler"))
        .current_dir(root)
        .args(["deploy", "--dry-run", "--env", env, "--outdir"])
        .arg(&outdir)
        .envs([
            ("CI", "true"),
            ("WRANGLER_SEND_METRICS", "false"),
            ("NO_COLOR", "1"),
        ])
        .output()
        .expect("run wrangler (scripts/setup.sh installs it)");
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
fn staging_and_production_deploy_with_their_own_bindings() {
    for env in ["staging", "production"] {
        let text = dry_run(env);
        assert!(
            text.contains(&format!("edge-credentials-{env}")),
            "{env} must use its own D1 database:\n{text}"
        );
        assert!(text.contains("RATE_LIMITER"), "{text}");
        assert!(
            text.contains(&format!("\"{env}\"")),
            "ENVIRONMENT var:\n{text}"
        );
    }
}
