//! Rate limiting in front of the handlers. The IP limiter decides before any D1 lookup, so a
//! flood of bad tokens is throttled; the principal limiter runs in the same round of
//! Durable Object calls whenever the caller's principal is known without I/O (a verified
//! JWT, or a well-formed API key by its hash). A request costs at most one round trip per
//! limiter, and the two run in parallel.
//!
//! When a limiter cannot be reached, writes fail closed (503 with `Retry-After`) and reads
//! fail open: they are served without that limiter, and the log line says so.

use futures_util::future::join;
use worker::{Env, Response};

use super::limiter;
use crate::core::{
    config::Config,
    error::{ApiError, ErrorKind},
    log::RequestLog,
    ratelimit::{rate_limit_headers, whole_seconds, Decision, HeaderEntry, Policy},
};

pub struct Admission {
    /// `(RateLimit-Policy, RateLimit)` for the limiters passed, if any.
    headers: Option<(String, String)>,
}

impl Admission {
    /// Adds our `RateLimit` headers, unless the response already has the provider's (a
    /// relayed proxy response): those describe the budget the caller is spending there.
    pub fn decorate(&self, response: &Response) {
        let headers = response.headers();
        if headers.has("RateLimit").unwrap_or(false) {
            return;
        }
        if let Some((policy, state)) = &self.headers {
            let _ = headers.set("RateLimit-Policy", policy);
            let _ = headers.set("RateLimit", state);
        }
    }
}

pub struct Request<'a> {
    pub ip_key: String,
    pub principal_key: Option<String>,
    pub is_write: bool,
    /// Test hook: make the limiter objects throw (only with TEST_HOOKS=1).
    pub fail_limiter: bool,
    pub log: &'a mut RequestLog,
}

pub async fn admit(env: &Env, config: &Config, req: Request<'_>) -> Result<Admission, ApiError> {
    let limits = &config.limits;
    let fail = req.fail_limiter && config.test_hooks;
    let ip = limiter::check(env, &req.ip_key, &limits.ip, fail);
    let principal = async {
        match &req.principal_key {
            Some(key) => Some(limiter::check(env, key, &limits.principal, fail).await),
            None => None,
        }
    };
    let (ip, principal) = join(ip, principal).await;

    let mut entries = Vec::with_capacity(2);
    let mut unavailable = None;
    let outcomes = [
        ("ip", &limits.ip, Some(ip)),
        ("principal", &limits.principal, principal),
    ];
    for (name, policy, outcome) in outcomes {
        match outcome {
            None => {}
            Some(Ok(Decision::Limited { retry_after_ms })) => {
                return Err(ApiError::new(ErrorKind::RateLimited, "Rate limit exceeded")
                    .with_retry_after(whole_seconds(retry_after_ms)));
            }
            Some(Ok(Decision::Allowed {
                remaining,
                reset_ms,
            })) => entries.push((name, policy, remaining, reset_ms)),
            Some(Err(e)) => unavailable = Some(format!("{name} limiter: {e}")),
        }
    }
    if let Some(detail) = unavailable {
        if req.is_write {
            return Err(ApiError::unavailable(
                "Rate limiting is unavailable; retry shortly",
                detail,
            ));
        }
        req.log.limiter = Some("fail_open");
        req.log.error = Some(detail);
    }
    Ok(Admission {
        headers: headers(&entries),
    })
}

fn headers(entries: &[(&str, &Policy, u32, i64)]) -> Option<(String, String)> {
    if entries.is_empty() {
        return None;
    }
    let entries: Vec<HeaderEntry<'_>> = entries
        .iter()
        .map(|&(name, policy, remaining, reset_ms)| HeaderEntry {
            name,
            policy,
            remaining,
            reset_ms,
        })
        .collect();
    Some(rate_limit_headers(&entries))
}
