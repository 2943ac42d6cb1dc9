//! The ComfyUI Cloud stub (`scripts/provider-stub.mjs`) that every worker of this binary
//! uses as its upstream, and what it recorded. Tests assert on what the stub received, not
//! only on what the worker answered.

use std::{
    path::{Path, PathBuf},
    process::{Child, ChildStdin},
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};

use serde_json::Value;

use super::{free_port, supervise, ROOT};

pub struct Stub {
    pub base_url: String,
    pub log_path: PathBuf,
    _supervisor: Mutex<(Child, ChildStdin)>,
}

/// The shared stub, started on first use; it lives as long as the test binary.
pub fn stub() -> &'static Stub {
    static SHARED: OnceLock<Stub> = OnceLock::new();
    SHARED.get_or_init(Stub::start)
}

fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(20)))
            .build(),
    )
}

impl Stub {
    fn start() -> Stub {
        let port = free_port();
        let dir =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("e2e-stub-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // The name matters: scripts/test.sh scans every worker-*.log for plaintext keys, and
        // the stub is the one place a key is meant to arrive.
        let log_path = dir.join("provider-stub.log");
        let node = PathBuf::from("node");
        let args = vec![
            format!("{ROOT}/scripts/provider-stub.mjs"),
            "--port".to_string(),
            port.to_string(),
        ];
        let (child, stdin) = supervise(&node, &args, &log_path);
        let stub = Stub {
            base_url: format!("http://127.0.0.1:{port}"),
            log_path,
            _supervisor: Mutex::new((child, stdin)),
        };
        let started = Instant::now();
        while agent()
            .get(format!("{}/__stub/requests", stub.base_url))
            .call()
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the provider stub did not start: {}",
                std::fs::read_to_string(&stub.log_path).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        stub
    }

    /// Tells the stub that `key` is a valid ComfyUI Cloud key.
    pub fn allow(&self, key: &str) {
        let r = agent()
            .post(format!("{}/__stub/keys", self.base_url))
            .send_json(serde_json::json!({ "key": key }))
            .expect("tell the stub a key");
        assert_eq!(r.status().as_u16(), 204);
    }

    /// Tells the stub that `key` is no longer valid, as if revoked at the provider.
    pub fn forget(&self, key: &str) {
        let r = agent()
            .delete(format!("{}/__stub/keys", self.base_url))
            .force_send_body()
            .send_json(serde_json::json!({ "key": key }))
            .expect("tell the stub to forget a key");
        assert_eq!(r.status().as_u16(), 204);
    }

    /// Every request the stub recorded, oldest first.
    pub fn requests(&self) -> Vec<Value> {
        let mut r = agent()
            .get(format!("{}/__stub/requests", self.base_url))
            .call()
            .expect("read the stub's requests");
        r.body_mut()
            .with_config()
            .limit(256 * 1024 * 1024)
            .read_json::<Vec<Value>>()
            .expect("the stub's requests as JSON")
    }

    /// The account checks (verification calls) the stub received for `key`.
    pub fn account_checks_of(&self, key: &str) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r["path"] == "/developer/api/v1/account")
            .filter(|r| r["headers"]["authorization"] == format!("Bearer {key}"))
            .collect()
    }

    /// The recorded requests whose path or query contains `marker`.
    pub fn requests_with(&self, marker: &str) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| {
                r["path"].as_str().unwrap_or("").contains(marker)
                    || r["query"].as_str().unwrap_or("").contains(marker)
            })
            .collect()
    }

    /// The one recorded request with `marker`, waiting briefly for its body to finish.
    pub fn the_request_with(&self, marker: &str) -> Value {
        let started = Instant::now();
        loop {
            let found = self.requests_with(marker);
            if found.len() == 1 && found[0]["complete"] == true {
                return found.into_iter().next().unwrap();
            }
            assert!(
                found.len() <= 1 && started.elapsed() < Duration::from_secs(20),
                "expected one complete stub request with {marker}, found {found:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
