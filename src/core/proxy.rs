//! The credential-injecting proxy's rules, pure so they can be tested and fuzzed: which
//! requests reach the proxy (the two mounts), which paths may be sent upstream, which
//! headers cross in each direction, and how big an upload may be.
//!
//! The edge (`edge/proxy.rs`) only applies these decisions. The upstream origin itself is
//! never computed from a request: it is `COMFY_CLOUD_ORIGIN`, and a request only ever
//! contributes a path (checked here) and a query string.

use super::{
    body,
    error::{ApiError, ErrorKind},
};

/// The path mount: `ANY {PATH_MOUNT}/{path}` goes to `{origin}/{path}`.
pub const PATH_MOUNT: &str = "/api/v1/cloud-providers/comfy-cloud/proxy";
/// The log line's route for each mount (no raw path, no query string).
pub const PATH_MOUNT_ROUTE: &str = "/api/v1/cloud-providers/comfy-cloud/proxy/{path}";
pub const HOST_MOUNT_ROUTE: &str = "proxy-host:{path}";
/// The path mount's operations as `openapi.yaml` documents them (HEAD and OPTIONS are
/// relayed too, and described there).
pub const DOCUMENTED_METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];
/// The methods the proxy relays; anything else gets 405.
pub const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
/// The provider's API prefixes, proxied by default (`COMFY_CLOUD_PROXY_PREFIXES`).
pub const DEFAULT_PREFIXES: &str = "/developer/api/v1/,/api/v2/";
/// Seed 002's upload limit, 100 MB, read as 100 MiB: a client that means either gets
/// through, and the provider still enforces its own.
pub const MAX_UPLOAD_BYTES: u64 = 100 * 1024 * 1024;
/// The name we give ourselves in `Proxy-Status` (RFC 9209).
pub const PROXY_NAME: &str = "edge-credentials";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mount {
    /// `/api/v1/cloud-providers/comfy-cloud/proxy/{path}` on the service's own host.
    Path,
    /// Every request to `COMFY_CLOUD_PROXY_HOST`, relayed whole.
    Host,
}

impl Mount {
    pub fn route(self) -> &'static str {
        match self {
            Mount::Path => PATH_MOUNT_ROUTE,
            Mount::Host => HOST_MOUNT_ROUTE,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Mount::Path => "path",
            Mount::Host => "host",
        }
    }
}

/// The host part of a request URL (`http://localhost:8787/x` → `localhost`), lower-cased,
/// without port or userinfo. `None` for a URL with no authority.
pub fn url_host(url: &str) -> Option<String> {
    let (_, authority) = origin_and_authority(url)?;
    let authority = authority.rsplit('@').next()?;
    let host = if let Some(v6) = authority.strip_prefix('[') {
        format!("[{}]", v6.split(']').next()?)
    } else {
        authority.split(':').next()?.to_string()
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// `scheme://authority` of an absolute URL, as the runtime hands it over; `None` without
/// a scheme or an authority.
pub fn url_origin(url: &str) -> Option<&str> {
    origin_and_authority(url)
        .filter(|(_, authority)| !authority.is_empty())
        .map(|(origin, _)| origin)
}

/// The URL up to the end of its authority, and the authority alone.
fn origin_and_authority(url: &str) -> Option<(&str, &str)> {
    let start = url.find("://")? + 3;
    let len = url[start..]
        .find(['/', '?', '#'])
        .unwrap_or(url.len() - start);
    Some((&url[..start + len], &url[start..start + len]))
}

/// The raw path and the raw query (with its `?`) of a request URL, exactly as sent.
pub fn url_path_and_query(url: &str) -> (&str, &str) {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let start = after_scheme.find('/').unwrap_or(after_scheme.len());
    let target = &after_scheme[start..];
    let target = target.split('#').next().unwrap_or("");
    match target.find('?') {
        Some(i) => (&target[..i], &target[i..]),
        None => (target, ""),
    }
}

/// Which mount, if any, serves a request with this host and raw path. The host mount takes
/// every path of its host; the path mount takes its prefix on any other host.
pub fn mount_for(host: Option<&str>, proxy_host: Option<&str>, path: &str) -> Option<Mount> {
    if let (Some(host), Some(proxy)) = (host, proxy_host) {
        if host.eq_ignore_ascii_case(proxy) {
            return Some(Mount::Host);
        }
    }
    let rest = path.strip_prefix(PATH_MOUNT)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(Mount::Path)
}

/// The upstream path for a raw request path under `mount`, after every path rule and the
/// prefix allowlist. 400 for a path trick, 404 outside the provider's API prefixes.
pub fn upstream_path(
    mount: Mount,
    raw_path: &str,
    prefixes: &[String],
) -> Result<String, ApiError> {
    let path = match mount {
        Mount::Host => raw_path,
        Mount::Path => raw_path.strip_prefix(PATH_MOUNT).unwrap_or(""),
    };
    check_path(path)?;
    if !prefixes.iter().any(|p| path.starts_with(p.as_str())) {
        return Err(ApiError::not_found(format!(
            "Only the provider's API is proxied: paths under {}",
            prefixes.join(", ")
        )));
    }
    Ok(path.to_string())
}

fn refuse(why: &str) -> ApiError {
    ApiError::invalid_request(format!("Proxy path refused: {why}"))
}

/// The contract's path rules. `path` is what follows the mount, still percent-encoded, and
/// must start with `/`.
pub fn check_path(path: &str) -> Result<(), ApiError> {
    if path.is_empty() || path == "/" {
        return Err(refuse("the path is empty"));
    }
    if !path.starts_with('/') || looks_absolute(path) {
        return Err(refuse("it must be a path, not a URL"));
    }
    let bytes = path.as_bytes();
    if bytes.iter().any(|b| *b < 0x20 || *b == 0x7f) {
        return Err(refuse("control characters"));
    }
    if path.contains('\\') {
        return Err(refuse("a backslash"));
    }
    if path.contains("//") {
        return Err(refuse("an empty segment (//)"));
    }
    if path.contains('@') {
        return Err(refuse("an @"));
    }
    // Every escape must be two hex digits; the decoded byte may not be a separator, a
    // control character or an @ (a second decoder could turn it into a trick).
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let byte = path
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| refuse("a malformed percent-escape"))?;
            match byte {
                b'/' | b'\\' => return Err(refuse("an encoded / or \\")),
                b'@' => return Err(refuse("an @")),
                b'%' => return Err(refuse("a double-encoded escape")),
                b if b < 0x20 || b == 0x7f => return Err(refuse("control characters")),
                _ => {}
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    for segment in path.split('/').skip(1) {
        let decoded = segment.replace("%2e", ".").replace("%2E", ".");
        if decoded == "." || decoded == ".." {
            return Err(refuse("a . or .. segment"));
        }
    }
    Ok(())
}

/// `/http://x`, `/https:%2f%2fx`, `/javascript:...`: a first segment that is a URL scheme.
fn looks_absolute(path: &str) -> bool {
    let first = path[1..].split('/').next().unwrap_or("");
    let Some((scheme, _)) = first.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// Request headers that may cross to the provider. Everything else stays here, the caller's
/// `Authorization`, `Cookie`, `X-Team-ID`, `cf-*` and `x-forwarded-*` above all.
const FORWARDED_REQUEST_HEADERS: [&str; 10] = [
    "accept",
    "content-type",
    "content-length",
    "content-encoding",
    "idempotency-key",
    "if-match",
    "if-none-match",
    "range",
    "last-event-id",
    "user-agent",
];

pub fn forwards_request_header(name: &str) -> bool {
    FORWARDED_REQUEST_HEADERS
        .iter()
        .any(|h| h.eq_ignore_ascii_case(name))
}

const RETURNED_RESPONSE_HEADERS: [&str; 8] = [
    "content-type",
    "content-length",
    "content-encoding",
    "content-disposition",
    "cache-control",
    "etag",
    "last-modified",
    "retry-after",
];

/// Response headers that may come back to the caller. `Location` only on a 3xx, so a
/// redirect reaches the caller unfollowed; never `Set-Cookie`.
pub fn returns_response_header(name: &str, status: u16) -> bool {
    let lower = name.to_ascii_lowercase();
    RETURNED_RESPONSE_HEADERS.contains(&lower.as_str())
        || lower.starts_with("ratelimit")
        || lower.starts_with("x-ratelimit-")
        || (lower == "location" && (300..400).contains(&status))
}

/// `Proxy-Status` for a response relayed from the provider (RFC 9209).
pub fn proxy_status(upstream_status: u16) -> String {
    format!("{PROXY_NAME}; received-status={upstream_status}")
}

/// A declared `Content-Length` over the cap is refused before anything is sent. A missing
/// or unparsable one is left to counting as the body streams.
pub fn check_declared_length(content_length: Option<&str>) -> Result<Option<u64>, ApiError> {
    let Some(declared) = body::declared_length(content_length) else {
        return Ok(None);
    };
    if declared > MAX_UPLOAD_BYTES {
        return Err(upload_too_large());
    }
    Ok(Some(declared))
}

pub fn upload_too_large() -> ApiError {
    ApiError::new(
        ErrorKind::PayloadTooLarge,
        "Request body too large: the provider accepts at most 100 MB (104857600 bytes)",
    )
}

pub fn upstream_timeout() -> ApiError {
    ApiError::new(
        ErrorKind::GatewayTimeout,
        "ComfyUI Cloud did not answer in time",
    )
}

pub fn upstream_unreachable(detail: String) -> ApiError {
    ApiError {
        internal_detail: Some(detail),
        ..ApiError::new(ErrorKind::BadGateway, "ComfyUI Cloud could not be reached")
    }
}

/// The upstream URL: the configured origin, a checked path, and the query as sent.
pub fn upstream_url(origin: &str, path: &str, query: &str) -> String {
    format!("{origin}{path}{query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefixes() -> Vec<String> {
        DEFAULT_PREFIXES.split(',').map(str::to_string).collect()
    }

    #[test]
    fn hosts_and_targets_are_read_from_the_url_as_sent() {
        assert_eq!(
            url_host("http://localhost:8787/a").as_deref(),
            Some("localhost")
        );
        assert_eq!(
            url_host("https://PROXY.example.com/a").as_deref(),
            Some("proxy.example.com")
        );
        assert_eq!(url_host("http://u:p@h.test/a").as_deref(), Some("h.test"));
        assert_eq!(url_host("http://[::1]:8787/").as_deref(), Some("[::1]"));
        assert_eq!(url_host("/relative"), None);
        assert_eq!(
            url_path_and_query("http://h/api/v2/jobs?limit=2&x=%2F#frag"),
            ("/api/v2/jobs", "?limit=2&x=%2F")
        );
        assert_eq!(url_path_and_query("http://h"), ("", ""));
    }

    #[test]
    fn mounts_by_host_then_by_path_prefix() {
        let host = Some("localhost");
        assert_eq!(
            mount_for(host, Some("localhost"), "/anything"),
            Some(Mount::Host)
        );
        assert_eq!(
            mount_for(Some("LOCALHOST"), Some("localhost"), "/"),
            Some(Mount::Host)
        );
        assert_eq!(
            mount_for(Some("127.0.0.1"), Some("localhost"), "/api/v1/teams"),
            None
        );
        assert_eq!(
            mount_for(
                Some("127.0.0.1"),
                None,
                "/api/v1/cloud-providers/comfy-cloud/proxy/api/v2/jobs"
            ),
            Some(Mount::Path)
        );
        assert_eq!(
            mount_for(None, None, "/api/v1/cloud-providers/comfy-cloud/proxy"),
            Some(Mount::Path)
        );
        assert_eq!(
            mount_for(None, None, "/api/v1/cloud-providers/comfy-cloud/proxyx"),
            None
        );
        assert_eq!(
            mount_for(None, None, "/api/v1/cloud-providers/comfy-cloud"),
            None
        );
    }

    #[test]
    fn every_path_trick_of_the_contract_is_refused() {
        let refused = [
            "",
            "/",
            "/api/v2/../admin",
            "/api/v2/./jobs",
            "/api/v2/%2e%2e/admin",
            "/api/v2/%2E%2e/admin",
            "/api/v2/.%2e/admin",
            "/api/v2/%2e/jobs",
            "/api/v2/..",
            "/api/v2/jobs%2fx",
            "/api/v2/jobs%2Fx",
            "/api/v2/jobs%5cx",
            "/api/v2/jobs\\x",
            "/api/v2//jobs",
            "//evil.example/api/v2/",
            "/api/v2/user@evil.example",
            "/api/v2/%40evil",
            "/api/v2/jobs\n",
            "/api/v2/jobs%0d%0aX-Injected:1",
            "/api/v2/%00",
            "/api/v2/\u{7f}",
            "/https://evil.example/api/v2/",
            "/http:evil.example",
            "api/v2/jobs",
            "/api/v2/%zz",
            "/api/v2/%2",
            "/api/v2/%252e%252e/admin",
        ];
        for path in refused {
            let e = check_path(path).unwrap_err();
            assert_eq!(e.status(), 400, "{path:?}");
        }
    }

    #[test]
    fn ordinary_api_paths_pass_and_stay_as_sent() {
        for path in [
            "/api/v2/jobs",
            "/api/v2/jobs/7f3d2c1b-9a8e/events",
            "/developer/api/v1/account",
            "/api/v2/assets/a%20b",
            "/api/v2/files/name.with.dots..png",
            "/api/v2/x:y",
        ] {
            assert_eq!(upstream_path(Mount::Host, path, &prefixes()).unwrap(), path);
        }
        assert_eq!(
            upstream_path(
                Mount::Path,
                "/api/v1/cloud-providers/comfy-cloud/proxy/api/v2/jobs",
                &prefixes()
            )
            .unwrap(),
            "/api/v2/jobs"
        );
    }

    #[test]
    fn only_the_provider_prefixes_are_proxied() {
        for path in [
            "/healthz",
            "/api/v1/teams",
            "/developer/api/v2/x",
            "/api/v2",
            "/api/v20/x",
        ] {
            let e = upstream_path(Mount::Host, path, &prefixes()).unwrap_err();
            assert_eq!(e.status(), 404, "{path}");
            assert!(
                e.message.contains("/developer/api/v1/, /api/v2/"),
                "{}",
                e.message
            );
        }
        let e = upstream_path(
            Mount::Path,
            "/api/v1/cloud-providers/comfy-cloud/proxy",
            &prefixes(),
        )
        .unwrap_err();
        assert_eq!(e.status(), 400);
    }

    #[test]
    fn request_headers_cross_only_from_the_allowlist() {
        for name in [
            "Accept",
            "content-type",
            "Content-Length",
            "Idempotency-Key",
            "Range",
            "Last-Event-ID",
            "User-Agent",
            "If-None-Match",
        ] {
            assert!(forwards_request_header(name), "{name}");
        }
        for name in [
            "Authorization",
            "Cookie",
            "X-Team-ID",
            "CF-Connecting-IP",
            "cf-ray",
            "X-Forwarded-For",
            "X-Forwarded-Proto",
            "Host",
            "Proxy-Authorization",
            "Forwarded",
            "X-Real-IP",
            "Transfer-Encoding",
            "Connection",
        ] {
            assert!(!forwards_request_header(name), "{name}");
        }
    }

    #[test]
    fn response_headers_come_back_only_from_the_allowlist() {
        for name in [
            "Content-Type",
            "ETag",
            "Retry-After",
            "RateLimit",
            "RateLimit-Policy",
            "X-RateLimit-Remaining",
            "Cache-Control",
            "Content-Disposition",
        ] {
            assert!(returns_response_header(name, 200), "{name}");
        }
        assert!(returns_response_header("Location", 302));
        assert!(!returns_response_header("Location", 201));
        for name in [
            "Set-Cookie",
            "Server",
            "Via",
            "WWW-Authenticate",
            "Access-Control-Allow-Origin",
            "X-Powered-By",
        ] {
            assert!(!returns_response_header(name, 200), "{name}");
        }
    }

    #[test]
    fn uploads_are_capped_at_100_mb() {
        assert_eq!(
            check_declared_length(Some("104857600")).unwrap(),
            Some(MAX_UPLOAD_BYTES)
        );
        assert_eq!(
            check_declared_length(Some("104857601"))
                .unwrap_err()
                .status(),
            413
        );
        assert_eq!(check_declared_length(None).unwrap(), None);
        assert_eq!(check_declared_length(Some("nonsense")).unwrap(), None);
    }

    #[test]
    fn our_errors_and_relayed_ones_are_told_apart() {
        assert_eq!(proxy_status(401), "edge-credentials; received-status=401");
        assert_eq!(upstream_timeout().status(), 504);
        let e = upstream_unreachable("connect ECONNREFUSED".into());
        assert_eq!(e.status(), 502);
        assert!(!e.body().contains("ECONNREFUSED"));
    }
}
