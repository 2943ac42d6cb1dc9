//! The team settings page: served by the worker with its security headers, and walked in a
//! real browser (tests/browser/settings.mjs: Debian's Chromium, driven by playwright-core)
//! against the real worker and the provider stub. Afterwards, what the stub and D1 saw.

use crate::support::*;
use serde_json::{json, Value};
use std::{path::Path, process::Command};

const CHROMIUM: &str = "/usr/bin/chromium";

#[test]
fn the_page_and_its_files_carry_a_strict_policy() {
    let w = worker();
    let _log = w.on_failure();
    for path in [
        "/settings",
        "/settings/",
        "/settings/app.js",
        "/settings/app.css",
    ] {
        let r = Call::get(w, path).send();
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        let csp = r.header("content-security-policy").unwrap_or_default();
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
    }
    let page = Call::get(w, "/settings").send();
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    // No inline script and no other origin in the page itself.
    assert!(page
        .text
        .contains(r#"<script type="module" src="/settings/app.js"></script>"#));
    assert_eq!(page.text.matches("<script").count(), 1);
    assert!(!page.text.contains("http://") && !page.text.contains("https://"));
    let script = Call::get(w, "/settings/app.js").send();
    assert!(script
        .header("content-type")
        .unwrap()
        .contains("javascript"));
    assert!(
        !script.text.contains("innerHTML"),
        "API data never goes through innerHTML"
    );

    // Only the page's own files; anything else is the contract's 404 or 405.
    for path in [
        "/settings/nope.js",
        "/settings/../wrangler.toml",
        "/settings/a/b.js",
        "/index.html",
        "/settings.html",
    ] {
        let r = Call::get(w, path).send();
        assert_eq!(r.status, 404, "{path}: {}", r.text);
        assert_eq!(r.json()["error"]["type"], "not_found", "{path}");
    }
    // The page and its files together stay under 60 KB gzipped.
    let mut gzipped = 0;
    for entry in std::fs::read_dir(Path::new(ROOT).join("public/settings")).unwrap() {
        let out = Command::new("gzip")
            .args(["-9", "-c"])
            .arg(entry.unwrap().path())
            .output()
            .expect("gzip");
        gzipped += out.stdout.len();
    }
    assert!(gzipped < 60_000, "{gzipped} bytes gzipped");
    let posted = Call::post(w, "/settings").send();
    posted.assert_error(405, "method_not_allowed");
    assert_eq!(posted.header("allow"), Some("GET, HEAD"));
}

#[test]
fn the_frame_ancestors_come_from_config() {
    let w =
        spawn(Options::default().var("SETTINGS_FRAME_ANCESTORS", "https://app.example.com 'self'"));
    let _log = w.on_failure();
    let r = Call::get(&w, "/settings").send();
    let csp = r.header("content-security-policy").unwrap();
    assert!(
        csp.ends_with("frame-ancestors https://app.example.com 'self'"),
        "{csp}"
    );
}

/// The whole story in a browser: sign in with a dev link, keys, the provider key (rejected,
/// then accepted), fallback, an agent coming online, a revocation, the audit; a member's
/// read-only view; an expired link. Screenshots go to `SETTINGS_SCREENSHOT_DIR` (the ones
/// in docs/ were taken with `SETTINGS_SCREENSHOT_DIR=docs/screenshots`).
#[test]
fn a_team_admin_walks_the_settings_page_in_a_real_browser() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "Chromium is not installed: run ./scripts/setup.sh (apt-get install chromium)"
    );
    // A worker of its own: the browser's requests cannot take the harness's D1 lock, so on
    // the shared worker another test's `Worker::d1` could find the SQLite file busy under
    // them (a 503 in the page; it happened in a suite run). This test reads D1 only after
    // the browser is done.
    let own = spawn(Options::default());
    let w = &own;
    let _log = w.on_failure();
    let team = Team::new(w);
    let member = unique_user("member");
    add_member(w, &team.owner, &team.id, &member, "member");
    let good = format!(
        "comfyui-settings-good-{}",
        unique_user("k").replace('-', "x")
    );
    let bad = format!(
        "comfyui-settings-bad-{}",
        unique_user("k").replace('-', "x")
    );
    plaintexts::watch(&good);
    plaintexts::watch(&bad);
    stub().allow(&good);
    let agent_name = unique_user("gpu");
    // Fifty renames: the audit view then has a second page.
    for i in 0..50 {
        let r = Call::patch(w, "/api/v1/team")
            .bearer(&token(&team.owner))
            .header("X-Team-ID", &team.id)
            .json(&json!({ "name": format!("Render farm {i}") }))
            .send();
        assert_eq!(r.status, 200, "{}", r.text);
    }

    // The owner's link from the script a developer would use.
    let link = Command::new("node")
        .arg(Path::new(ROOT).join("scripts/dev-token.mjs"))
        .args([team.owner.as_str(), "600", "--link", w.base_url.as_str()])
        .output()
        .expect("run scripts/dev-token.mjs --link");
    assert!(link.status.success());
    let link = String::from_utf8(link.stdout).unwrap().trim().to_string();
    assert!(
        link.starts_with(&format!("{}/settings#token=", w.base_url)),
        "{link}"
    );
    let link_for = |token: String| format!("{}/settings#token={token}", w.base_url);
    let expired = token_with(&json!({"sub": team.owner, "exp": now_s() - 60}));

    let shots = std::env::var("SETTINGS_SCREENSHOT_DIR").unwrap_or_else(|_| {
        format!(
            "{}/settings-{}",
            env!("CARGO_TARGET_TMPDIR"),
            std::process::id()
        )
    });
    let out = Command::new("node")
        .arg(Path::new(ROOT).join("tests/browser/settings.mjs"))
        .current_dir(ROOT)
        .env("BASE_URL", &w.base_url)
        .env("LINK_OWNER", &link)
        .env("TOKEN_OWNER", token(&team.owner))
        .env("LINK_MEMBER", link_for(token(&member)))
        .env("LINK_EXPIRED", link_for(expired))
        .env("GOOD_KEY", &good)
        .env("BAD_KEY", &bad)
        .env("AGENT_NAME", &agent_name)
        .env("SCREENSHOT_DIR", &shots)
        .env("CHROMIUM", CHROMIUM)
        .output()
        .expect("run tests/browser/settings.mjs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    plaintexts::assert_absent("the browser test's output", &format!("{stdout}{stderr}"));
    assert!(
        out.status.success(),
        "the browser story failed:\n{stdout}\n{stderr}"
    );
    let story: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert!(
        story["rejected"]
            .as_str()
            .unwrap()
            .contains("The development provider"),
        "the rejection names the environment: {story}"
    );

    // What the stub saw: the rejected key checked once, the good one on both saves and the
    // re-verify.
    let checks = |key: &str| stub().account_checks_of(key).len();
    assert_eq!(checks(&bad), 1);
    assert_eq!(checks(&good), 3);

    // What D1 holds: the good key, sealed, verified, with fallback on.
    let row = team.row(w);
    assert_eq!(row["status"], "active");
    assert_eq!(row["cloud_fallback"], 1);
    assert_eq!(row["verification_state"], "verified");
    assert_eq!(team.decrypted(w), good);
    let keys = w.d1(&format!(
        "SELECT name, kind, scopes, revoked_at FROM api_keys WHERE team_id = '{}' ORDER BY created_at",
        team.id
    ));
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(
        (keys[0]["name"].as_str(), keys[0]["kind"].as_str()),
        (Some("ci-pipeline"), Some("secret"))
    );
    assert!(keys[0]["revoked_at"].is_number(), "revoked from the page");
    assert!(keys[0]["scopes"]
        .as_str()
        .unwrap()
        .contains("cloud_providers:use"));
    assert_eq!(
        (keys[1]["name"].as_str(), keys[1]["kind"].as_str()),
        (Some(agent_name.as_str()), Some("device"))
    );
    assert!(keys[1]["revoked_at"].is_null());
    for name in ["providers", "keys", "agents", "audit", "member", "signin"] {
        let file = Path::new(&shots).join(format!("settings-{name}.png"));
        assert!(
            file.metadata().map(|m| m.len() > 1000).unwrap_or(false),
            "{file:?}"
        );
    }
}
