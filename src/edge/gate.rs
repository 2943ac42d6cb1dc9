//! Rate limiting in front of the handlers (`core/ipgate.rs` has the rules):
//!
//! - Anonymous requests and credentials refused without I/O are counted per address (its
//!   limiter object): 40 per 10 s, then a 10 s cooldown.
//! - A verified JWT, or a well-formed API key, meets its principal's limiter only: no call to
//!   the address's object on the request path. A key that then fails in D1 is counted per
//!   address afterwards ([`charge_failed_key`]); a key that succeeds is reported to the
//!   address's object at most every five minutes per isolate, off the request path.
//! - An isolate that has seen an address's cooldown refuses well-formed keys from it
//!   without a D1 read, unless the address's object says the key authenticated from it in
//!   the last ten minutes.
//!
//! When a limiter cannot be reached: a write fails closed (503 with `Retry-After`); a read
//! by a principal is served without that limiter (the log line says `fail_open`); a request
//! that would read D1 before anyone is authenticated (`/healthz`, or a key during a known
//! cooldown) fails closed; a refused credential still gets its 401.

use std::{
    cell::{Cell, RefCell},
    collections::HashMap,
    future::Future,
    pin::Pin,
    time::Duration,
};

use futures_util::future::join;
use worker::{Env, Response};

use super::limiter;
use crate::core::{
    config::Config,
    error::{ApiError, ErrorKind},
    ipgate::{Caller, IsolateMemory},
    lease::{lease_ms, Lease, Step},
    log::RequestLog,
    ratelimit::{rate_limit_headers, whole_seconds, Decision, HeaderEntry, Policy},
    time::UnixMillis,
};

thread_local! {
    /// Cooldowns seen and key successes reported by this isolate.
    static MEMORY: RefCell<IsolateMemory> = RefCell::new(IsolateMemory::default());
    /// This isolate's leases of principals' budgets (`core/lease.rs`).
    static LEASES: RefCell<HashMap<String, Lease>> = RefCell::new(HashMap::new());
}

/// How often a request waiting on its principal's renewal ([`Step::Wait`]) looks again, and
/// how long it waits at most before asking the object for a token of its own. It waits on
/// its own timer: workerd cancels a request that waits only on another request's work as
/// hung, and a request must not continue on another request's I/O.
const WAIT_POLL_MS: u64 = 1;
const WAIT_MAX_MS: i64 = 250;

/// Settles a renewal that is dropped before its answer (its request was cancelled), so
/// the next request renews instead of waiting on it.
struct InFlight<'a> {
    key: &'a str,
    renewal: bool,
    answered: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.answered && self.renewal {
            with_lease(self.key, super::app::now(), |lease| lease.failed(true));
        }
    }
}

/// Principals whose leases an isolate keeps; past this, idle ones are dropped (losing a
/// lease only ever costs its unspent tokens).
const MAX_LEASES: usize = 10_000;

/// The principal's decision: from this isolate's lease when it holds a token, else from
/// the principal's object, which grants the next lease. The test hook always asks.
async fn principal_decision(
    env: &Env,
    key: &str,
    policy: &Policy,
    fail: bool,
    now: UnixMillis,
    calls: &Cell<u32>,
    refill: &Cell<Option<(u32, Returned)>>,
) -> worker::Result<Decision> {
    if fail {
        calls.set(calls.get() + 1);
        return limiter::check(env, key, policy, fail).await;
    }
    let mut now = now;
    loop {
        // Tokens of leases that ended unspent go back with the call this request makes.
        let (step, returned) = with_lease(key, now, |lease| lease.step_returning(policy, now));
        return match step {
            Step::Spent(decision) => Ok(decision),
            Step::SpentRefill { decision, want } => {
                // The refill runs after the response; it is this request's call.
                calls.set(calls.get() + 1);
                refill.set(Some((want, returned)));
                Ok(decision)
            }
            Step::Ask { want, renewal } => {
                calls.set(calls.get() + 1);
                ask(env, key, policy, want, renewal, returned, now).await
            }
            Step::Wait { renewal } => {
                let since = now;
                loop {
                    worker::Delay::from(Duration::from_millis(WAIT_POLL_MS)).await;
                    now = super::app::now();
                    if !with_lease(key, now, |lease| lease.awaits(renewal)) {
                        break;
                    }
                    if now - since >= WAIT_MAX_MS {
                        // Still in flight: a token for this request alone, as without waiting.
                        calls.set(calls.get() + 1);
                        return ask(env, key, policy, 1, false, Vec::new(), now).await;
                    }
                }
                continue;
            }
        };
    }
}

/// Tokens of ended leases, `(bucket, n)`, to give back to the object.
type Returned = Vec<(UnixMillis, u32)>;

/// Refills a principal's lease ahead of need, after the response (`wait_until`).
fn refill_task(
    env: Env,
    key: String,
    policy: Policy,
    (want, returned): (u32, Returned),
    sent_at: UnixMillis,
) -> Background {
    Box::pin(async move {
        let ask = limiter::Ask {
            want,
            hold_ms: lease_ms(&policy),
            ahead: true,
            returned,
            fail: false,
        };
        let mut in_flight = InFlight {
            key: &key,
            renewal: true,
            answered: false,
        };
        let answer = limiter::take(&env, &key, &policy, ask).await;
        let later = super::app::now();
        with_lease(&key, later, |lease| match answer {
            Ok(grant) => lease.refilled(&policy, sent_at, later, grant),
            Err(_) => lease.failed(true),
        });
        in_flight.answered = true;
    })
}

/// Work that finishes after the response.
pub type Background = Pin<Box<dyn Future<Output = ()>>>;

/// Asks the principal's object for `want` tokens and settles the answer with the lease.
async fn ask(
    env: &Env,
    key: &str,
    policy: &Policy,
    want: u32,
    renewal: bool,
    returned: Returned,
    sent_at: UnixMillis,
) -> worker::Result<Decision> {
    let ask = limiter::Ask {
        want,
        hold_ms: lease_ms(policy),
        returned,
        ..limiter::Ask::default()
    };
    let mut in_flight = InFlight {
        key,
        renewal,
        answered: false,
    };
    let answer = limiter::take(env, key, policy, ask).await;
    let later = super::app::now();
    let decision = with_lease(key, later, |lease| match answer {
        Ok(grant) => Ok(lease.answer(policy, sent_at, later, renewal, grant)),
        Err(e) => {
            lease.failed(renewal);
            Err(e)
        }
    });
    in_flight.answered = true;
    decision
}

fn with_lease<T>(key: &str, now: UnixMillis, f: impl FnOnce(&mut Lease) -> T) -> T {
    LEASES.with(|leases| {
        let mut leases = leases.borrow_mut();
        if leases.len() >= MAX_LEASES && !leases.contains_key(key) {
            leases.retain(|_, lease| !lease.is_idle(now));
            if leases.len() >= MAX_LEASES {
                leases.clear();
            }
        }
        f(leases.entry(key.to_string()).or_default())
    })
}

pub struct Admission {
    /// `(RateLimit-Policy, RateLimit)` for the limiters passed, if any.
    headers: Option<(String, String)>,
    /// A refill of the principal's lease, to run after the response.
    pub background: Option<Background>,
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
    pub caller: Caller,
    /// The principal's limiter key, when the caller presented one (a JWT or a key).
    pub principal_key: Option<String>,
    /// The key's SHA-256, for a well-formed API key.
    pub key_hash: Option<String>,
    pub is_write: bool,
    /// The route reads D1 for an anonymous caller (`/healthz`).
    pub anonymous_d1: bool,
    /// Test hook: make the limiter objects throw (only with TEST_HOOKS=1).
    pub fail_limiter: bool,
    pub now: UnixMillis,
    pub log: &'a mut RequestLog,
}

fn limited(retry_after_ms: i64) -> ApiError {
    ApiError::new(ErrorKind::RateLimited, "Rate limit exceeded")
        .with_retry_after(whole_seconds(retry_after_ms))
}

fn unreachable_limiter(detail: String) -> ApiError {
    ApiError::unavailable("Rate limiting is unavailable; retry shortly", detail)
}

pub async fn admit(env: &Env, config: &Config, req: Request<'_>) -> Result<Admission, ApiError> {
    let limits = &config.limits;
    let fail = req.fail_limiter && config.test_hooks;

    // A well-formed key from an address this isolate knows to be cooling down: refused
    // without a D1 read, unless the key authenticated from there lately.
    if let (Caller::Key, Some(hash)) = (req.caller, &req.key_hash) {
        if let Some(until) = MEMORY.with(|m| m.borrow().cooldown(&req.ip_key, req.now)) {
            req.log.do_calls += 1;
            match limiter::knows(env, &req.ip_key, hash, fail).await {
                Ok(true) => {}
                Ok(false) => return Err(limited(until - req.now)),
                Err(e) => return Err(unreachable_limiter(format!("ip limiter: {e}"))),
            }
        }
    }

    let calls = Cell::new(0);
    let refill = Cell::new(None);
    let ip = async {
        if req.caller.charged_to_ip() {
            calls.set(calls.get() + 1);
            Some(limiter::check(env, &req.ip_key, &limits.ip, fail).await)
        } else {
            None
        }
    };
    let principal = async {
        match &req.principal_key {
            Some(key) => {
                let decision =
                    principal_decision(env, key, &limits.principal, fail, req.now, &calls, &refill);
                Some(decision.await)
            }
            None => None,
        }
    };
    let (ip, principal) = join(ip, principal).await;
    req.log.do_calls += calls.get();

    let mut entries = Vec::with_capacity(2);
    let mut unavailable = None;
    let outcomes = [
        ("ip", &limits.ip, ip),
        ("principal", &limits.principal, principal),
    ];
    for (name, policy, outcome) in outcomes {
        match outcome {
            None => {}
            Some(Ok(Decision::Limited { retry_after_ms })) => {
                if name == "ip" {
                    note_cooldown(&req.ip_key, req.now + retry_after_ms);
                }
                return Err(limited(retry_after_ms));
            }
            Some(Ok(Decision::Allowed {
                remaining,
                reset_ms,
            })) => entries.push((name, policy, remaining, reset_ms)),
            Some(Err(e)) => unavailable = Some((name, format!("{name} limiter: {e}"))),
        }
    }
    if let Some((name, detail)) = unavailable {
        // The address's limiter guards D1 from anonymous callers: without it, fail closed.
        let guards_d1 = name == "ip" && req.anonymous_d1;
        if req.is_write || guards_d1 {
            return Err(unreachable_limiter(detail));
        }
        req.log.limiter = Some("fail_open");
        req.log.error = Some(detail);
    }
    let background = match (refill.take(), &req.principal_key) {
        (Some(want), Some(key)) => Some(refill_task(
            env.clone(),
            key.clone(),
            limits.principal,
            want,
            req.now,
        )),
        _ => None,
    };
    Ok(Admission {
        headers: headers(&entries),
        background,
    })
}

/// Whether a read may run beside [`admit`] instead of after it: the caller meets its
/// principal's limiter only (no address limiter, no cooldown check), and this isolate's
/// last answer from that limiter was a grant ([`Lease::vouches`]). Then a lease renewal,
/// when one is needed, runs at the same time as the read's D1 batch; if it refuses after
/// all, the read's answer is dropped for the 429. A principal the object has refused, or
/// one this isolate has never asked about, waits for the answer before any read, so a
/// throttled key cannot make every refused request cost a D1 read.
pub fn may_overlap(req: &Request<'_>) -> bool {
    if req.fail_limiter || req.caller.charged_to_ip() {
        return false;
    }
    if req.caller == Caller::Key
        && MEMORY.with(|m| m.borrow().cooldown(&req.ip_key, req.now).is_some())
    {
        return false;
    }
    let Some(key) = req.principal_key.as_deref() else {
        return false;
    };
    LEASES.with(|leases| leases.borrow().get(key).is_some_and(Lease::vouches))
}

fn note_cooldown(ip_key: &str, until: UnixMillis) {
    MEMORY.with(|m| m.borrow_mut().note_cooldown(ip_key, until));
}

/// A well-formed key that D1 refused is a failed authentication: counted in the address's
/// window after the fact. When that count goes over, the answer is 429 like any other
/// request over the window, and this isolate remembers the cooldown. An unreachable
/// limiter changes nothing: the 401 stands.
pub async fn charge_failed_key(
    env: &Env,
    config: &Config,
    ip_key: &str,
    now: UnixMillis,
) -> Option<ApiError> {
    match limiter::check(env, ip_key, &config.limits.ip, false).await {
        Ok(Decision::Limited { retry_after_ms }) => {
            note_cooldown(ip_key, now + retry_after_ms);
            Some(limited(retry_after_ms))
        }
        _ => None,
    }
}

/// Whether this isolate should report that `hash` authenticated from `ip_key` (at most
/// every five minutes per pair); the report itself runs after the response.
pub fn should_report_success(ip_key: &str, hash: &str, now: UnixMillis) -> bool {
    MEMORY.with(|m| m.borrow_mut().should_report(ip_key, hash, now))
}

/// Reports a key's success to the address's object; a failure is logged and retried on a
/// later success.
pub async fn report_success(env: Env, ip_key: String, hash: String) {
    if let Err(e) = limiter::record_success(&env, &ip_key, &hash).await {
        MEMORY.with(|m| m.borrow_mut().forget_report(&ip_key, &hash));
        worker::console_error!(
            "{}",
            crate::core::json::Obj::new()
                .str("job", "report_key_success")
                .str("error", &e.to_string())
                .done()
        );
    }
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
