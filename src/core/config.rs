//! Configuration read once per isolate from vars and secrets. Parsing is pure: the edge
//! passes a lookup function, tests pass a map.

use super::{
    auth::jwt::{JwtSettings, JwtVerifier},
    crypto::KeyRing,
    ratelimit::{Limits, Policy},
    upstream::Upstream,
};

/// Every development default carries this marker, so production can recognise and refuse it.
pub const DEV_SECRET_MARKER: &str = "insecure-dev";

/// The development AES key of `.dev.vars.example`, recognised under any key id: renaming
/// the id must not smuggle a public key into a deployed ring.
const DEV_KEY_MATERIAL: &str = "ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CBgoM=";

/// The secrets that must never hold a development default in production.
pub const SECRET_NAMES: [&str; 2] = ["JWT_SECRET", "CREDENTIAL_KEYS"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Staging,
    Production,
}

impl Environment {
    fn parse(value: Option<&str>) -> Result<Self, ConfigError> {
        match value.unwrap_or("development") {
            "development" => Ok(Environment::Development),
            "staging" => Ok(Environment::Staging),
            "production" => Ok(Environment::Production),
            _ => Err(ConfigError::invalid(
                "ENVIRONMENT",
                "expected development, staging or production",
            )),
        }
    }
}

/// What is wrong with the configuration. It names the variable, never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: &'static str,
}

impl ConfigError {
    pub fn invalid(variable: &'static str, problem: &'static str) -> Self {
        ConfigError { variable, problem }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "config {}: {}", self.variable, self.problem)
    }
}

pub struct Config {
    pub environment: Environment,
    /// Names of secrets that still hold a development default.
    pub dev_secrets: Vec<&'static str>,
    pub jwt: JwtVerifier,
    /// `None` when `CREDENTIAL_KEYS` is unset: credential endpoints then answer 503.
    pub key_ring: Option<KeyRing>,
    /// Rows re-encrypted per batch by the scheduled rotation job.
    pub rotation_batch: usize,
    /// Batches per scheduled run (two D1 calls each, so a run stays well inside the
    /// subrequest limit); the next run resumes where this one stopped.
    pub rotation_max_batches: usize,
    pub limits: Limits,
    /// Test-only hooks (forcing a limiter failure, a D1 failure). Refused in production.
    pub test_hooks: bool,
    /// ComfyUI Cloud: where it is, verification, and the proxy.
    pub upstream: Upstream,
    /// An agent is online while its last heartbeat is younger than this (`AGENT_TTL_SECS`).
    pub agent_ttl_secs: u32,
    /// The most teams one user may belong to (`MAX_TEAMS_PER_USER`, default 100).
    pub max_teams_per_user: u32,
    /// Bounded growth: members per team, usable API keys per team.
    pub caps: Caps,
    /// Audit events older than this many days are deleted by the cron
    /// (`AUDIT_RETENTION_DAYS`, default 365).
    pub audit_retention_days: u32,
    /// The settings page's CSP `frame-ancestors` (`SETTINGS_FRAME_ANCESTORS`, default
    /// `'none'`).
    pub settings_frame_ancestors: String,
}

/// The caps on growth (OWASP API4), from config vars; a refusal names the var.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub teams_per_user: u32,
    pub members_per_team: u32,
    pub active_keys_per_team: u32,
}

pub(crate) fn number<T: std::str::FromStr + PartialOrd>(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
    range: std::ops::RangeInclusive<T>,
    problem: &'static str,
) -> Result<T, ConfigError> {
    match lookup(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse::<T>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| ConfigError::invalid(name, problem)),
    }
}

impl Config {
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let environment = Environment::parse(lookup("ENVIRONMENT").as_deref())?;
        let dev_secrets = SECRET_NAMES
            .into_iter()
            .filter(|name| {
                lookup(name)
                    .is_some_and(|v| v.contains(DEV_SECRET_MARKER) || v.contains(DEV_KEY_MATERIAL))
            })
            .collect();
        let (secret, jwks) = (lookup("JWT_SECRET"), lookup("JWT_JWKS"));
        let (issuer, audience) = (lookup("JWT_ISSUER"), lookup("JWT_AUDIENCE"));
        let jwt = JwtVerifier::new(JwtSettings {
            secret: secret.as_deref(),
            jwks: jwks.as_deref(),
            issuer: issuer.as_deref(),
            audience: audience.as_deref(),
        })?;
        let key_ring = lookup("CREDENTIAL_KEYS")
            .filter(|v| !v.trim().is_empty())
            .map(|v| KeyRing::from_config(&v))
            .transpose()?;
        let rotation_batch = number(
            &lookup,
            "ROTATION_BATCH_SIZE",
            100,
            1..=1000,
            "must be 1 to 1000",
        )?;
        let rotation_max_batches = number(
            &lookup,
            "ROTATION_MAX_BATCHES",
            20,
            1..=200,
            "must be 1 to 200",
        )?;
        let d = Limits::default();
        const MS: &str = "must be 1 to 86400000 milliseconds";
        const COUNT: &str = "must be 1 to 1000000000";
        let limits = Limits {
            ip: Policy {
                limit: number(
                    &lookup,
                    "RATE_LIMIT_IP_REQUESTS",
                    d.ip.limit,
                    1..=1_000_000_000,
                    COUNT,
                )?,
                window_ms: number(
                    &lookup,
                    "RATE_LIMIT_IP_WINDOW_MS",
                    d.ip.window_ms,
                    1..=86_400_000,
                    MS,
                )?,
                cooldown_ms: number(
                    &lookup,
                    "RATE_LIMIT_IP_COOLDOWN_MS",
                    d.ip.cooldown_ms,
                    0..=86_400_000,
                    MS,
                )?,
            },
            principal: Policy {
                limit: number(
                    &lookup,
                    "RATE_LIMIT_PRINCIPAL_REQUESTS",
                    d.principal.limit,
                    1..=1_000_000_000,
                    COUNT,
                )?,
                window_ms: number(
                    &lookup,
                    "RATE_LIMIT_PRINCIPAL_WINDOW_MS",
                    d.principal.window_ms,
                    1..=86_400_000,
                    MS,
                )?,
                cooldown_ms: 0,
            },
        };
        let test_hooks = lookup("TEST_HOOKS").is_some_and(|v| v == "1");
        if test_hooks && environment == Environment::Production {
            return Err(ConfigError::invalid(
                "TEST_HOOKS",
                "must not be set in production",
            ));
        }
        let upstream = Upstream::from_lookup(&lookup, environment)?;
        let agent_ttl_secs = number(
            &lookup,
            "AGENT_TTL_SECS",
            super::presence::DEFAULT_TTL_SECS,
            1..=86_400,
            "must be 1 to 86400 seconds",
        )?;
        let max_teams_per_user = number(
            &lookup,
            "MAX_TEAMS_PER_USER",
            100,
            1..=1_000_000,
            "must be 1 to 1000000",
        )?;
        let caps = Caps {
            teams_per_user: max_teams_per_user,
            members_per_team: number(
                &lookup,
                "MAX_MEMBERS_PER_TEAM",
                5_000,
                1..=1_000_000,
                "must be 1 to 1000000",
            )?,
            active_keys_per_team: number(
                &lookup,
                "MAX_ACTIVE_KEYS_PER_TEAM",
                1_000,
                1..=1_000_000,
                "must be 1 to 1000000",
            )?,
        };
        let audit_retention_days = number(
            &lookup,
            "AUDIT_RETENTION_DAYS",
            365,
            1..=36_500,
            "must be 1 to 36500 days",
        )?;
        let settings_frame_ancestors =
            super::settings::parse_frame_ancestors(lookup("SETTINGS_FRAME_ANCESTORS").as_deref())?;
        Ok(Config {
            environment,
            dev_secrets,
            jwt,
            key_ring,
            rotation_batch,
            rotation_max_batches,
            limits,
            test_hooks,
            upstream,
            agent_ttl_secs,
            max_teams_per_user,
            caps,
            audit_retention_days,
            settings_frame_ancestors,
        })
    }

    /// A deployed environment (staging or production) refuses to serve the API with
    /// development secrets: a deploy that forgot `wrangler secret put` must fail loudly, not
    /// encrypt real keys under a public key.
    ///
    /// Production with a JWKS also needs `JWT_ISSUER` and `JWT_AUDIENCE`: without them, any
    /// token the same keys sign for another service would be accepted here.
    pub fn refuses_service(&self) -> Option<ConfigError> {
        if let (Environment::Staging | Environment::Production, Some(name)) =
            (self.environment, self.dev_secrets.first())
        {
            return Some(ConfigError::invalid(
                name,
                "holds a development default; set the real secret with `wrangler secret put`",
            ));
        }
        if self.environment == Environment::Production
            && self.jwt.has_jwks()
            && !self.jwt.checks_issuer_and_audience()
        {
            return Some(ConfigError::invalid(
                "JWT_ISSUER",
                "JWT_ISSUER and JWT_AUDIENCE must both be set in production when JWT_JWKS is",
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn environment_defaults_to_development() {
        assert_eq!(config(&[]).unwrap().environment, Environment::Development);
        assert!(config(&[("ENVIRONMENT", "prod")]).is_err());
    }

    #[test]
    fn limits_come_from_vars_with_the_contract_as_default() {
        assert_eq!(config(&[]).unwrap().limits, Limits::default());
        let c = config(&[
            ("RATE_LIMIT_IP_REQUESTS", "5"),
            ("RATE_LIMIT_PRINCIPAL_WINDOW_MS", "2000"),
        ])
        .unwrap();
        assert_eq!((c.limits.ip.limit, c.limits.principal.window_ms), (5, 2000));
        assert_eq!(
            config(&[("RATE_LIMIT_IP_REQUESTS", "0")])
                .err()
                .unwrap()
                .variable,
            "RATE_LIMIT_IP_REQUESTS"
        );
        assert!(config(&[("RATE_LIMIT_IP_WINDOW_MS", "ten")]).is_err());
    }

    #[test]
    fn test_hooks_are_refused_in_production() {
        assert!(config(&[("TEST_HOOKS", "1")]).unwrap().test_hooks);
        assert!(config(&[("TEST_HOOKS", "1"), ("ENVIRONMENT", "production")]).is_err());
    }

    #[test]
    fn malformed_jwt_config_is_a_clear_error() {
        let e = config(&[("JWT_JWKS", "{not json")]).err().unwrap();
        assert_eq!(e.variable, "JWT_JWKS");
        let e = config(&[("CREDENTIAL_KEYS", r#"{"active":"k1","keys":{}}"#)])
            .err()
            .unwrap();
        assert_eq!(e.variable, "CREDENTIAL_KEYS");
        assert!(config(&[]).unwrap().key_ring.is_none());
        assert!(config(&[("JWT_SECRET", "short")]).is_err());
    }

    #[test]
    fn production_with_a_jwks_needs_issuer_and_audience() {
        let jwks = r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "e", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
        let base = [
            ("ENVIRONMENT", "production"),
            ("COMFY_CLOUD_ORIGIN", "https://cloud.comfy.org"),
            ("JWT_JWKS", jwks),
        ];
        let refused = config(&base).unwrap().refuses_service().expect("refused");
        assert_eq!(refused.variable, "JWT_ISSUER");
        let mut only_iss = base.to_vec();
        only_iss.push(("JWT_ISSUER", "https://id.example"));
        assert!(config(&only_iss).unwrap().refuses_service().is_some());
        let mut both = only_iss.clone();
        both.push(("JWT_AUDIENCE", "edge-credentials"));
        assert!(config(&both).unwrap().refuses_service().is_none());
        // Development and staging are not held to it.
        assert!(config(&[("JWT_JWKS", jwks)])
            .unwrap()
            .refuses_service()
            .is_none());
    }

    #[test]
    fn production_refuses_dev_secrets() {
        let dev = [("JWT_SECRET", "insecure-dev-jwt-secret-0123456789abcdef")];
        assert!(config(&dev).unwrap().refuses_service().is_none());
        let origin = ("COMFY_CLOUD_ORIGIN", "https://cloud.comfy.org");
        let prod = config(&[("ENVIRONMENT", "production"), dev[0], origin]).unwrap();
        let refusal = prod.refuses_service().expect("must refuse");
        assert_eq!(refusal.variable, "JWT_SECRET");
        assert!(!refusal.to_string().contains("insecure-dev-jwt-secret"));
        let real = config(&[
            ("ENVIRONMENT", "production"),
            ("JWT_SECRET", "3f9a8c0d5e7b41f2a6c9d8e0b1f2a3c4"),
            origin,
        ])
        .unwrap();
        assert!(real.refuses_service().is_none());
        let staging = config(&[("ENVIRONMENT", "staging"), dev[0], origin]).unwrap();
        assert!(
            staging.refuses_service().is_some(),
            "staging is deployed too"
        );
        // The dev key under another id is still the dev key.
        let renamed = format!(r#"{{"active":"prod-1","keys":{{"prod-1":"{DEV_KEY_MATERIAL}"}}}}"#);
        let prod = config(&[
            ("ENVIRONMENT", "production"),
            ("CREDENTIAL_KEYS", &renamed),
            origin,
        ])
        .unwrap();
        assert_eq!(prod.refuses_service().unwrap().variable, "CREDENTIAL_KEYS");
    }
}
