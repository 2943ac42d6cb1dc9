//! The one structured log line each request writes. Its fields are named here, so a key,
//! token or ciphertext has no field to leak through.

use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize)]
pub struct RequestLog {
    pub request_id: String,
    pub method: String,
    /// The route template (`/api/v1/cloud-providers/{provider}`), never the raw path or query.
    pub route: &'static str,
    pub status: u16,
    pub duration_ms: i64,
    pub team_id: Option<String>,
    pub principal_kind: Option<&'static str>,
    pub principal_id: Option<String>,
    /// D1 round trips this request made (a batch is one).
    pub d1_calls: u32,
    /// Durable Object calls this request waited for (limiters, presence).
    pub do_calls: u32,
    /// `fail_open` when a read was served without an unreachable rate limiter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limiter: Option<&'static str>,
    /// A proxied request: the mount, what the provider answered, and the byte counts. Never
    /// the key, the upstream `Authorization` or the query string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyLog>,
    /// The isolate's wasm memory when the request ended, in MiB. It never shrinks, so a
    /// body the worker had ever held whole would show here for the isolate's life.
    pub wasm_memory_mib: u32,
    /// Why a request failed on our side (5xx); written by our code, never a request value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ProxyLog {
    pub mount: &'static str,
    /// `None` when no response came (timeout, network error, refused before sending).
    pub upstream_status: Option<u16>,
    /// Request body bytes: counted as they streamed, or the declared length.
    pub bytes_in: Option<u64>,
    /// Response body bytes as the provider declared them (`None` for a stream without a
    /// length, such as Server-Sent Events).
    pub bytes_out: Option<u64>,
}

impl RequestLog {
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_of_json_with_every_field() {
        let line = RequestLog {
            request_id: "r1".into(),
            method: "GET".into(),
            route: "/healthz",
            status: 200,
            duration_ms: 3,
            ..Default::default()
        }
        .to_json_line();
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        for field in [
            "request_id",
            "method",
            "route",
            "status",
            "duration_ms",
            "team_id",
            "principal_kind",
            "principal_id",
        ] {
            assert!(v.get(field).is_some(), "missing {field}");
        }
    }
}
