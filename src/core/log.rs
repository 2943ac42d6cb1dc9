//! The one structured log line each request writes. Its fields are named here, so a key,
//! token or ciphertext has no field to leak through.

use super::json::Obj;

#[derive(Debug, Clone, Default)]
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
    /// `fail_open` when a read was served without an unreachable rate limiter (left out
    /// when `None`, as are `proxy` and `error`).
    pub limiter: Option<&'static str>,
    /// A proxied request: the mount, what the provider answered, and the byte counts. Never
    /// the key, the upstream `Authorization` or the query string.
    pub proxy: Option<ProxyLog>,
    /// The isolate's wasm memory when the request ended, in MiB. It never shrinks, so a
    /// body the worker had ever held whole would show here for the isolate's life.
    pub wasm_memory_mib: u32,
    /// Why a request failed on our side (5xx); written by our code, never a request value.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default)]
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
        let mut o = Obj::new()
            .str("request_id", &self.request_id)
            .str("method", &self.method)
            .str("route", self.route)
            .int("status", self.status.into())
            .int("duration_ms", self.duration_ms)
            .opt_str("team_id", self.team_id.as_deref())
            .opt_str("principal_kind", self.principal_kind)
            .opt_str("principal_id", self.principal_id.as_deref())
            .int("d1_calls", self.d1_calls.into())
            .int("do_calls", self.do_calls.into());
        if let Some(limiter) = self.limiter {
            o = o.str("limiter", limiter);
        }
        if let Some(p) = &self.proxy {
            let as_int = |n: Option<u64>| n.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
            let proxy = Obj::new()
                .str("mount", p.mount)
                .opt_int("upstream_status", p.upstream_status.map(i64::from))
                .opt_int("bytes_in", as_int(p.bytes_in))
                .opt_int("bytes_out", as_int(p.bytes_out))
                .done();
            o = o.raw("proxy", &proxy);
        }
        o = o.int("wasm_memory_mib", self.wasm_memory_mib.into());
        if let Some(error) = &self.error {
            o = o.str("error", error);
        }
        o.done()
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
        for field in ["limiter", "proxy", "error"] {
            assert!(v.get(field).is_none(), "{field} should be left out");
        }
    }

    #[test]
    fn the_optional_parts_are_written_when_set() {
        let line = RequestLog {
            request_id: "r\"1".into(),
            team_id: Some("t".into()),
            limiter: Some("fail_open"),
            proxy: Some(ProxyLog {
                mount: "/api/v1/proxy/comfy-cloud",
                upstream_status: Some(502),
                bytes_in: Some(100 * 1024 * 1024),
                bytes_out: None,
            }),
            error: Some("d1: timeout".into()),
            ..Default::default()
        }
        .to_json_line();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["request_id"], "r\"1");
        assert_eq!(v["team_id"], "t");
        assert_eq!(v["principal_id"], serde_json::Value::Null);
        assert_eq!(v["limiter"], "fail_open");
        assert_eq!(v["proxy"]["upstream_status"], 502);
        assert_eq!(v["proxy"]["bytes_in"], 104_857_600);
        assert_eq!(v["proxy"]["bytes_out"], serde_json::Value::Null);
        assert_eq!(v["error"], "d1: timeout");
    }
}
