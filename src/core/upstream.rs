//! Where ComfyUI Cloud is, and how we talk to it: read once from config vars.

use super::{
    config::{number, ConfigError, Environment},
    proxy::DEFAULT_PREFIXES,
    ratelimit::Policy,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// `scheme://host[:port]`, no trailing slash. `None` when `COMFY_CLOUD_ORIGIN` is unset:
    /// verification and the proxy then answer 503 (development only; deployed environments
    /// require it).
    pub origin: Option<String>,
    /// `COMFY_CLOUD_VERIFY`: `on` (default) or `off`.
    pub verify: bool,
    /// `COMFY_CLOUD_PROXY_HOST`: requests to this host are proxied whole.
    pub proxy_host: Option<String>,
    /// `COMFY_CLOUD_PROXY_PREFIXES`: the only paths the proxy relays.
    pub prefixes: Vec<String>,
    /// No response headers within this → 504 (`COMFY_CLOUD_TIMEOUT_MS`, default 30 s).
    pub timeout_ms: u32,
    /// The verification call's limit (`COMFY_CLOUD_VERIFY_TIMEOUT_MS`, default 5 s).
    pub verify_timeout_ms: u32,
    /// Per team, in front of the provider: seed 002's 600 requests per minute.
    pub team_limit: Policy,
}

impl Upstream {
    pub fn from_lookup(
        lookup: &impl Fn(&str) -> Option<String>,
        environment: Environment,
    ) -> Result<Upstream, ConfigError> {
        let origin = lookup("COMFY_CLOUD_ORIGIN")
            .filter(|v| !v.trim().is_empty())
            .map(|v| parse_origin(v.trim(), environment))
            .transpose()?;
        if origin.is_none() && environment != Environment::Development {
            return Err(ConfigError::invalid(
                "COMFY_CLOUD_ORIGIN",
                "is required in staging and production",
            ));
        }
        let verify = match lookup("COMFY_CLOUD_VERIFY").as_deref().map(str::trim) {
            None | Some("on") => true,
            Some("off") => false,
            Some(_) => {
                return Err(ConfigError::invalid(
                    "COMFY_CLOUD_VERIFY",
                    "must be on or off",
                ))
            }
        };
        let proxy_host = lookup("COMFY_CLOUD_PROXY_HOST")
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty());
        if proxy_host.as_deref().is_some_and(|h| {
            !h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
        }) {
            return Err(ConfigError::invalid(
                "COMFY_CLOUD_PROXY_HOST",
                "must be a bare host name, without scheme, port or path",
            ));
        }
        let prefixes_text =
            lookup("COMFY_CLOUD_PROXY_PREFIXES").unwrap_or_else(|| DEFAULT_PREFIXES.to_string());
        let prefixes: Vec<String> = prefixes_text
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect();
        if prefixes.is_empty()
            || prefixes.iter().any(|p| {
                !p.starts_with('/') || !p.ends_with('/') || p.len() < 3 || p.contains("//")
            })
        {
            return Err(ConfigError::invalid(
                "COMFY_CLOUD_PROXY_PREFIXES",
                "must be a comma-separated list of paths that start and end with /",
            ));
        }
        const MS: &str = "must be 1 to 600000 milliseconds";
        Ok(Upstream {
            origin,
            verify,
            proxy_host,
            prefixes,
            timeout_ms: number(lookup, "COMFY_CLOUD_TIMEOUT_MS", 30_000, 1..=600_000, MS)?,
            verify_timeout_ms: number(
                lookup,
                "COMFY_CLOUD_VERIFY_TIMEOUT_MS",
                5_000,
                1..=600_000,
                MS,
            )?,
            team_limit: Policy {
                limit: number(
                    lookup,
                    "RATE_LIMIT_PROVIDER_REQUESTS",
                    600,
                    1..=1_000_000_000,
                    "must be 1 to 1000000000",
                )?,
                window_ms: number(
                    lookup,
                    "RATE_LIMIT_PROVIDER_WINDOW_MS",
                    60_000,
                    1..=86_400_000,
                    "must be 1 to 86400000 milliseconds",
                )?,
                cooldown_ms: 0,
            },
        })
    }
}

/// `scheme://host[:port]` and nothing else. Staging and production take https only, so a
/// key is never sent in the clear.
fn parse_origin(value: &str, environment: Environment) -> Result<String, ConfigError> {
    let invalid = |problem| ConfigError::invalid("COMFY_CLOUD_ORIGIN", problem);
    let origin = value.strip_suffix('/').unwrap_or(value);
    let (scheme, authority) = origin
        .split_once("://")
        .ok_or_else(|| invalid("must be an origin such as https://cloud.comfy.org"))?;
    match (scheme, environment) {
        ("https", _) => {}
        ("http", Environment::Development) => {}
        ("http", _) => return Err(invalid("must be https in staging and production")),
        _ => return Err(invalid("must be an http or https origin")),
    }
    let host_ok = !authority.is_empty()
        && authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if !host_ok {
        return Err(invalid(
            "must be scheme://host[:port], with no path, query or credentials",
        ));
    }
    Ok(format!("{scheme}://{}", authority.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn upstream(env: Environment, pairs: &[(&str, &str)]) -> Result<Upstream, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Upstream::from_lookup(&|k| map.get(k).cloned(), env)
    }

    #[test]
    fn defaults_follow_the_contract() {
        let u = upstream(Environment::Development, &[]).unwrap();
        assert_eq!(u.origin, None);
        assert!(u.verify);
        assert_eq!(u.prefixes, vec!["/developer/api/v1/", "/api/v2/"]);
        assert_eq!((u.timeout_ms, u.verify_timeout_ms), (30_000, 5_000));
        assert_eq!((u.team_limit.limit, u.team_limit.window_ms), (600, 60_000));
    }

    #[test]
    fn deployed_environments_require_an_https_origin() {
        for env in [Environment::Staging, Environment::Production] {
            assert_eq!(
                upstream(env, &[]).unwrap_err().variable,
                "COMFY_CLOUD_ORIGIN"
            );
            let e = upstream(env, &[("COMFY_CLOUD_ORIGIN", "http://cloud.comfy.org")]).unwrap_err();
            assert_eq!(e.problem, "must be https in staging and production");
        }
        let prod = upstream(
            Environment::Production,
            &[("COMFY_CLOUD_ORIGIN", "https://cloud.comfy.org/")],
        )
        .unwrap();
        assert_eq!(prod.origin.as_deref(), Some("https://cloud.comfy.org"));
        let dev = upstream(
            Environment::Development,
            &[("COMFY_CLOUD_ORIGIN", "http://127.0.0.1:8788")],
        )
        .unwrap();
        assert_eq!(dev.origin.as_deref(), Some("http://127.0.0.1:8788"));
    }

    #[test]
    fn an_origin_is_only_an_origin() {
        for bad in [
            "cloud.comfy.org",
            "ftp://cloud.comfy.org",
            "https://cloud.comfy.org/developer/api/v1",
            "https://user:pw@cloud.comfy.org",
            "https://cloud.comfy.org?x=1",
            "https://",
        ] {
            assert!(
                upstream(Environment::Development, &[("COMFY_CLOUD_ORIGIN", bad)]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn switches_hosts_and_prefixes_are_checked() {
        let off = upstream(Environment::Development, &[("COMFY_CLOUD_VERIFY", "off")]).unwrap();
        assert!(!off.verify);
        assert!(upstream(Environment::Development, &[("COMFY_CLOUD_VERIFY", "no")]).is_err());
        let host = upstream(
            Environment::Development,
            &[("COMFY_CLOUD_PROXY_HOST", "Comfy.Example.com")],
        )
        .unwrap();
        assert_eq!(host.proxy_host.as_deref(), Some("comfy.example.com"));
        assert!(upstream(
            Environment::Development,
            &[("COMFY_CLOUD_PROXY_HOST", "https://x/")]
        )
        .is_err());
        assert!(upstream(
            Environment::Development,
            &[("COMFY_CLOUD_PROXY_PREFIXES", "/api")]
        )
        .is_err());
        assert!(upstream(
            Environment::Development,
            &[("COMFY_CLOUD_PROXY_PREFIXES", "/")]
        )
        .is_err());
    }
}
