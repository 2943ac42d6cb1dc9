//! A small HTTP client for the tests: raw status, headers and body, never an error for a
//! 4xx or 5xx, so tests assert exactly what a caller would see.

use super::{plaintexts, Worker};
use std::{sync::OnceLock, time::Duration};

fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                // A redirect is an answer to assert on, never something to follow.
                .max_redirects(0)
                .timeout_global(Some(Duration::from_secs(60)))
                // A fresh connection per request: wrangler's proxy closes idle keep-alive
                // connections, and a reused one would fail as "connection reset".
                .max_idle_connections(0)
                .max_idle_connections_per_host(0)
                .build(),
        )
    })
}

#[must_use]
pub struct Call<'w> {
    worker: &'w Worker,
    method: &'static str,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl<'w> Call<'w> {
    pub fn new(worker: &'w Worker, method: &'static str, path: &str) -> Self {
        Call {
            worker,
            method,
            path: path.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
    pub fn get(worker: &'w Worker, path: &str) -> Self {
        Self::new(worker, "GET", path)
    }
    pub fn post(worker: &'w Worker, path: &str) -> Self {
        Self::new(worker, "POST", path)
    }
    pub fn put(worker: &'w Worker, path: &str) -> Self {
        Self::new(worker, "PUT", path)
    }
    pub fn patch(worker: &'w Worker, path: &str) -> Self {
        Self::new(worker, "PATCH", path)
    }
    pub fn delete(worker: &'w Worker, path: &str) -> Self {
        Self::new(worker, "DELETE", path)
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
    pub fn bearer(self, token: &str) -> Self {
        self.header("Authorization", &format!("Bearer {token}"))
    }
    /// A JSON body. An `api_key` sent to a credential endpoint becomes a watched plaintext,
    /// and a key the provider stub accepts, unless it starts with `stub-` (the stub's keys
    /// for its other answers: `stub-401-...` is refused, `stub-500-...` fails, and so on).
    pub fn json(self, body: &serde_json::Value) -> Self {
        if self.path.contains("/cloud-providers/") {
            if let Some(key) = body.get("api_key").and_then(|k| k.as_str()) {
                plaintexts::watch(key);
                if !key.starts_with("stub-") {
                    super::stub().allow(key);
                }
            }
        }
        self.header("Content-Type", "application/json")
            .raw_body(body.to_string().into_bytes())
    }
    pub fn raw_body(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }

    pub fn send(self) -> Reply {
        let what = format!("{} {}", self.method, self.path);
        self.try_send()
            .unwrap_or_else(|e| panic!("{what}: transport error: {e}"))
    }

    /// Sends the request. wrangler dev's own proxy answers 503 "Your worker restarted
    /// mid-request" for a non-GET it could not hand to the worker (seen under full-suite
    /// load: the worker logged no line for those requests); that is retried, up to twice.
    /// The worker's own 503s are JSON errors and are never retried.
    pub fn try_send(self) -> Result<Reply, String> {
        const WRANGLER_RESTARTED: &str = "Your worker restarted mid-request.";
        let mut attempts = 0;
        loop {
            attempts += 1;
            let reply = self.send_once()?;
            if reply.status == 503 && reply.text.starts_with(WRANGLER_RESTARTED) && attempts < 3 {
                eprintln!(
                    "{} {}: wrangler's proxy lost it, retrying",
                    self.method, self.path
                );
                continue;
            }
            return Ok(reply);
        }
    }

    fn send_once(&self) -> Result<Reply, String> {
        let mut request = ureq::http::Request::builder()
            .method(self.method)
            .uri(self.worker.url(&self.path));
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let request = request.body(self.body.clone()).map_err(|e| e.to_string())?;
        let _shared = self
            .worker
            .db_access
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let mut response = agent().run(request).map_err(|e| e.to_string())?;
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let text = response
            .body_mut()
            .with_config()
            .limit(16 * 1024 * 1024)
            .read_to_string()
            .map_err(|e| e.to_string())?;
        let reply = Reply {
            status: response.status().as_u16(),
            headers,
            text,
        };
        let what = format!("the response to {} {}", self.method, self.path);
        plaintexts::assert_absent(&what, &reply.text);
        for (name, value) in &reply.headers {
            plaintexts::assert_absent(&format!("{what}, header {name}"), value);
        }
        Ok(reply)
    }
}

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// Names are lower-case.
    pub headers: Vec<(String, String)>,
    pub text: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text))
    }

    /// Asserts the status and the contract's error shape with this type.
    pub fn assert_error(&self, status: u16, error_type: &str) -> &Self {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        let body = self.json();
        assert_eq!(body["error"]["type"], error_type, "body: {}", self.text);
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "error without a message: {}",
            self.text
        );
        assert_eq!(
            body.as_object().map(|o| o.len()),
            Some(1),
            "extra top-level fields: {}",
            self.text
        );
        self
    }

    pub fn message(&self) -> String {
        self.json()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}
