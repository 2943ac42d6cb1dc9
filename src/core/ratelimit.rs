//! The rate-limit algorithm: a sliding window with an optional cooldown, as a state machine
//! with time passed in.
//!
//! The state is a run-length list of accepted requests: `(bucket start, count)` pairs,
//! oldest first. A request at `now` is allowed when fewer than `limit` accepted requests
//! lie in the window `(now - window, now]`. Rejected requests are not recorded, so they
//! neither count nor extend anything.
//!
//! Exactness and size:
//! - For limits up to [`EXACT_MAX_LIMIT`] (the contract's 40 and 600) a bucket is one
//!   millisecond, so the window is exact to the millisecond, and there are at most `limit`
//!   buckets (fewer when requests share a millisecond).
//! - Above that (tests and benchmarks raise limits to millions), a bucket is 1/128 of the
//!   window and is forgotten only once its last millisecond has left the window. A request
//!   is thus counted for at least the window and at most 1/128 longer: the limiter may
//!   refuse slightly early, never late, and the state holds at most 129 buckets.

use serde_json::Value;
use std::collections::VecDeque;

use super::{
    json::{self, Obj},
    time::UnixMillis,
};

/// The largest limit whose window is exact to the millisecond.
pub const EXACT_MAX_LIMIT: u32 = 1024;
/// Buckets per window above [`EXACT_MAX_LIMIT`].
const COARSE_BUCKETS: i64 = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub limit: u32,
    pub window_ms: i64,
    /// When > 0, the first request over the limit starts a cooldown during which every
    /// request is rejected. Rejections during the cooldown do not extend it.
    pub cooldown_ms: i64,
}

impl Policy {
    /// The width of one bucket of accepted requests, in milliseconds.
    fn bucket_ms(&self) -> i64 {
        if self.limit <= EXACT_MAX_LIMIT {
            1
        } else {
            (self.window_ms.max(1) + COARSE_BUCKETS - 1) / COARSE_BUCKETS
        }
    }
}

/// On the wire between an isolate and its limiter object: `{"decision": "allowed",
/// "remaining": …, "reset_ms": …}` or `{"decision": "limited", "retry_after_ms": …}`
/// ([`Decision::to_json`], [`Decision::from_json`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed {
        /// Requests still allowed in the current window.
        remaining: u32,
        /// Until the oldest counted request leaves the window.
        reset_ms: i64,
    },
    Limited {
        retry_after_ms: i64,
    },
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed { .. })
    }

    pub fn to_json(&self) -> String {
        match *self {
            Decision::Allowed {
                remaining,
                reset_ms,
            } => Obj::new()
                .str("decision", "allowed")
                .int("remaining", remaining.into())
                .int("reset_ms", reset_ms),
            Decision::Limited { retry_after_ms } => Obj::new()
                .str("decision", "limited")
                .int("retry_after_ms", retry_after_ms),
        }
        .done()
    }

    pub fn from_json(v: &Value) -> Option<Decision> {
        match v.get("decision")?.as_str()? {
            "allowed" => Some(Decision::Allowed {
                remaining: json::uint(v, "remaining")?,
                reset_ms: json::int(v, "reset_ms")?,
            }),
            "limited" => Some(Decision::Limited {
                retry_after_ms: json::int(v, "retry_after_ms")?,
            }),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WindowState {
    /// `(bucket start, accepted requests in it)`, oldest first.
    accepted: VecDeque<(UnixMillis, u32)>,
    /// Rejects everything before this time; 0 when there is no cooldown.
    cooldown_until: UnixMillis,
}

/// What a lease request got: `granted` tokens (the first for the request that asked, the
/// rest for its isolate to spend until the lease ends), or a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub granted: u32,
    pub decision: Decision,
    /// The bucket the held tokens were counted in (0 when none were): an isolate gives
    /// back the ones its lease did not spend by naming it ([`WindowState::give_back`]).
    pub held_at: UnixMillis,
}

impl Policy {
    pub fn to_json(&self) -> String {
        Obj::new()
            .int("limit", self.limit.into())
            .int("window_ms", self.window_ms)
            .int("cooldown_ms", self.cooldown_ms)
            .done()
    }

    pub fn from_json(v: &Value) -> Option<Policy> {
        Some(Policy {
            limit: json::uint(v, "limit")?,
            window_ms: json::int(v, "window_ms")?,
            cooldown_ms: json::int(v, "cooldown_ms")?,
        })
    }
}

impl Grant {
    /// `{"granted": …, "decision": {…}, "held_at": …}`; `held_at` may be left out (0).
    pub fn to_json(&self) -> String {
        Obj::new()
            .int("granted", self.granted.into())
            .raw("decision", &self.decision.to_json())
            .int("held_at", self.held_at)
            .done()
    }

    pub fn from_json(v: &Value) -> Option<Grant> {
        Some(Grant {
            granted: json::uint(v, "granted")?,
            decision: Decision::from_json(v.get("decision")?)?,
            held_at: match v.get("held_at") {
                None => 0,
                Some(at) => at.as_i64()?,
            },
        })
    }
}

impl WindowState {
    /// `{"accepted": [[bucket, count], …], "cooldown_until": …}`.
    pub fn to_json(&self) -> String {
        let accepted = json::array(&self.accepted, |o, (at, n)| {
            o.push_str(&format!("[{at},{n}]"));
        });
        Obj::new()
            .raw("accepted", &accepted)
            .int("cooldown_until", self.cooldown_until)
            .done()
    }

    pub fn from_json(v: &Value) -> Option<WindowState> {
        v.get("accepted")?;
        Some(WindowState {
            accepted: json::pairs(v, "accepted", Value::as_i64, json::as_u32)?.into(),
            cooldown_until: json::int(v, "cooldown_until")?,
        })
    }
}

impl WindowState {
    pub fn decide(&mut self, policy: &Policy, now: UnixMillis) -> Decision {
        self.take(policy, now, 1, 0).decision
    }

    /// Admits up to `want` requests at once (a lease, `core/lease.rs`): the first is
    /// counted at `now`, as [`WindowState::decide`] counts one; the others are counted at
    /// `now + hold_ms`, the latest time the lease lets them be spent, so each stays counted
    /// for a whole window after its use, whenever in the lease that is. Later requests are
    /// never counted before them (the order is kept): the window may refuse early, never
    /// late. Grants what is left when that is less than `want`, and refuses (as `decide`)
    /// when nothing is.
    pub fn take(&mut self, policy: &Policy, now: UnixMillis, want: u32, hold_ms: i64) -> Grant {
        self.grant(policy, now, want, hold_ms, true)
    }

    /// [`WindowState::take`] for tokens no request spends yet (an isolate refilling its
    /// lease ahead of need): every one is counted at `now + hold_ms`.
    pub fn take_ahead(
        &mut self,
        policy: &Policy,
        now: UnixMillis,
        want: u32,
        hold_ms: i64,
    ) -> Grant {
        self.grant(policy, now, want, hold_ms, false)
    }

    fn grant(
        &mut self,
        policy: &Policy,
        now: UnixMillis,
        want: u32,
        hold_ms: i64,
        first_now: bool,
    ) -> Grant {
        if now < self.cooldown_until {
            return Grant {
                granted: 0,
                decision: Decision::Limited {
                    retry_after_ms: self.cooldown_until - now,
                },
                held_at: 0,
            };
        }
        let bucket_ms = policy.bucket_ms();
        self.forget_before(now - policy.window_ms, bucket_ms);
        let counted: u64 = self.accepted.iter().map(|&(_, n)| n as u64).sum();
        if counted < policy.limit as u64 {
            let granted = want.max(1).min(policy.limit - counted as u32);
            let now_count = u32::from(first_now);
            if now_count > 0 {
                self.count(now, now_count, bucket_ms);
            }
            let mut held_at = 0;
            if granted > now_count {
                held_at = self.count(now + hold_ms.max(0), granted - now_count, bucket_ms);
            }
            return Grant {
                granted,
                held_at,
                decision: Decision::Allowed {
                    remaining: policy.limit - (counted as u32 + granted),
                    reset_ms: (self.oldest_expiry(policy, bucket_ms) - now).max(0),
                },
            };
        }
        let decision = if policy.cooldown_ms > 0 {
            self.cooldown_until = now + policy.cooldown_ms;
            Decision::Limited {
                retry_after_ms: policy.cooldown_ms,
            }
        } else {
            Decision::Limited {
                retry_after_ms: (self.oldest_expiry(policy, bucket_ms) - now).max(1),
            }
        };
        Grant {
            granted: 0,
            decision,
            held_at: 0,
        }
    }

    /// Takes back tokens of leases that ended unspent, `(held_at, n)` as their grants named
    /// them: at most `n` from exactly that bucket, while the window still holds it. Tokens
    /// are counts, so which grant's they were does not matter; a bucket never gives back
    /// more than it holds. Only tokens that can no longer be spent may be given back: each
    /// is then a count of a request that never happened, and the bound stands.
    pub fn give_back(&mut self, returned: &[(UnixMillis, u32)]) {
        for &(held_at, n) in returned {
            if let Some(i) = self
                .accepted
                .iter()
                .position(|&(start, _)| start == held_at)
            {
                let count = &mut self.accepted[i].1;
                *count -= n.min(*count);
                if *count == 0 {
                    self.accepted.remove(i);
                }
            }
        }
    }

    /// Counts `n` accepted requests at `at`, in its bucket, and says which bucket.
    fn count(&mut self, at: UnixMillis, n: u32, bucket_ms: i64) -> UnixMillis {
        // A clock that steps back must not break the oldest-first order.
        let bucket = self
            .accepted
            .back()
            .map_or(i64::MIN, |&(last, _)| last)
            .max(at - at.rem_euclid(bucket_ms));
        match self.accepted.back_mut() {
            Some((last, count)) if *last == bucket => *count += n,
            _ => self.accepted.push_back((bucket, n)),
        }
        bucket
    }

    /// When the oldest bucket leaves the window.
    fn oldest_expiry(&self, policy: &Policy, bucket_ms: i64) -> UnixMillis {
        self.accepted
            .front()
            .map_or(0, |&(start, _)| start + bucket_ms - 1 + policy.window_ms)
    }

    /// Drops the buckets whose every millisecond is at or before `cutoff`: they are outside
    /// every future window.
    fn forget_before(&mut self, cutoff: UnixMillis, bucket_ms: i64) {
        while self
            .accepted
            .front()
            .is_some_and(|&(start, _)| start + bucket_ms - 1 <= cutoff)
        {
            self.accepted.pop_front();
        }
    }

    /// The time after which this state remembers nothing, so its storage can be deleted.
    pub fn idle_after(&self, policy: &Policy) -> UnixMillis {
        let window_end = self.accepted.back().map_or(0, |&(start, _)| {
            start + policy.bucket_ms() - 1 + policy.window_ms
        });
        window_end.max(self.cooldown_until)
    }
}

/// The two limits of the contract, from config vars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Per client IP (IPv6 per /64), checked before authentication.
    pub ip: Policy,
    /// Per principal: an API key, or a JWT's user and team.
    pub principal: Policy,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            ip: Policy {
                limit: 40,
                window_ms: 10_000,
                cooldown_ms: 10_000,
            },
            principal: Policy {
                limit: 600,
                window_ms: 60_000,
                cooldown_ms: 0,
            },
        }
    }
}

/// The limiter key for a client address: an IPv4 address as it is, an IPv6 address by its
/// /64 prefix (one subscriber usually holds a whole /64). `CF-Connecting-IP` is the only
/// source; `X-Forwarded-For` is client-controlled and never read.
pub fn client_ip_key(cf_connecting_ip: Option<&str>) -> String {
    use std::net::IpAddr;
    match cf_connecting_ip
        .map(str::trim)
        .and_then(|v| v.parse::<IpAddr>().ok())
    {
        Some(IpAddr::V4(v4)) => format!("ip:{v4}"),
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("ip:{v4}"),
            None => {
                let s = v6.segments();
                format!("ip:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        // Without a usable address every such request shares one bucket: safe, not silent.
        None => "ip:unknown".to_string(),
    }
}

/// One limiter's outcome for the `RateLimit` headers (IETF httpapi rate-limit headers).
pub struct HeaderEntry<'a> {
    pub name: &'a str,
    pub policy: &'a Policy,
    pub remaining: u32,
    pub reset_ms: i64,
}

/// `RateLimit-Policy` and `RateLimit`, one list member per limiter passed:
/// `"ip";q=40;w=10` and `"ip";r=39;t=10`.
pub fn rate_limit_headers(entries: &[HeaderEntry<'_>]) -> (String, String) {
    let policy = entries
        .iter()
        .map(|e| {
            format!(
                "\"{}\";q={};w={}",
                e.name,
                e.policy.limit,
                whole_seconds(e.policy.window_ms)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let state = entries
        .iter()
        .map(|e| {
            format!(
                "\"{}\";r={};t={}",
                e.name,
                e.remaining,
                (e.reset_ms.max(0) as u64).div_ceil(1000)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    (policy, state)
}

/// Whole seconds for `Retry-After` and the `RateLimit` header: rounded up, at least 1.
pub fn whole_seconds(ms: i64) -> u32 {
    (ms.max(1) as u64).div_ceil(1000).min(u32::MAX as u64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_reads_back_what_it_wrote_and_the_tagged_form_it_always_had() {
        let read = |text: &str| Grant::from_json(&serde_json::from_str(text).unwrap());
        for decision in [
            Decision::Allowed {
                remaining: 7,
                reset_ms: 1_500,
            },
            Decision::Limited { retry_after_ms: 42 },
        ] {
            let grant = Grant {
                granted: 3,
                decision,
                held_at: 9,
            };
            assert_eq!(read(&grant.to_json()), Some(grant));
        }
        // As serde's derive wrote it, member order aside, and without `held_at`.
        assert_eq!(
            read(r#"{"decision":{"retry_after_ms":5,"decision":"limited"},"granted":0}"#),
            Some(Grant {
                granted: 0,
                decision: Decision::Limited { retry_after_ms: 5 },
                held_at: 0
            })
        );
        assert_eq!(
            Decision::Allowed {
                remaining: 1,
                reset_ms: 2
            }
            .to_json(),
            r#"{"decision":"allowed","remaining":1,"reset_ms":2}"#
        );
        for bad in [
            r#"{"decision":"allowed","remaining":1}"#,
            r#"{"decision":"limited"}"#,
            r#"{"decision":"maybe","retry_after_ms":1}"#,
            r#"{"remaining":1,"reset_ms":2}"#,
            r#"{"decision":"allowed","remaining":-1,"reset_ms":2}"#,
            r#"{"decision":"limited","retry_after_ms":"5"}"#,
        ] {
            let v = serde_json::from_str(bad).unwrap();
            assert_eq!(Decision::from_json(&v), None, "{bad}");
        }
    }

    #[test]
    fn a_window_and_a_policy_read_back_what_they_wrote() {
        let p = Policy {
            limit: 3,
            window_ms: 1_000,
            cooldown_ms: 5_000,
        };
        let mut w = WindowState::default();
        for now in [10, 10, 20, 30, 40] {
            w.decide(&p, now);
        }
        let text = w.to_json();
        assert_eq!(
            text,
            r#"{"accepted":[[10,2],[20,1]],"cooldown_until":5030}"#
        );
        let v = serde_json::from_str(&text).unwrap();
        assert_eq!(WindowState::from_json(&v), Some(w));
        let v = serde_json::from_str(&p.to_json()).unwrap();
        assert_eq!(Policy::from_json(&v), Some(p));
        for bad in [
            r#"{"cooldown_until":0}"#,
            r#"{"accepted":[[1]],"cooldown_until":0}"#,
            r#"{"accepted":[[1,-2]],"cooldown_until":0}"#,
        ] {
            let v = serde_json::from_str(bad).unwrap();
            assert_eq!(WindowState::from_json(&v), None, "{bad}");
        }
    }

    #[test]
    fn tokens_given_back_leave_only_the_bucket_their_grant_named() {
        let p = Policy {
            limit: 10,
            window_ms: 10_000,
            cooldown_ms: 0,
        };
        let mut w = WindowState::default();
        let lease = w.take(&p, 1_000, 5, 1_000);
        assert_eq!((lease.granted, lease.held_at), (5, 2_000));
        // A plain decision holds nothing (and is counted in the same last bucket: order is
        // kept).
        assert_eq!(w.take(&p, 1_500, 1, 0).held_at, 0);
        let ahead = w.take_ahead(&p, 1_600, 3, 1_000);
        assert_eq!((ahead.granted, ahead.held_at), (3, 2_600));
        assert!(w.take(&p, 1_700, 1, 0).decision.is_allowed());
        assert!(!w.take(&p, 1_700, 1, 0).decision.is_allowed(), "full: 10");
        // Three of the lease's four held tokens and two of the refill's three went unspent:
        // given back, they free five places. A bucket the window does not hold gives back
        // nothing.
        w.give_back(&[(2_000, 3), (1_234, 5), (2_600, 2)]);
        assert_eq!(w.take(&p, 1_800, 10, 0).granted, 5);
        // Outside the window, a bucket is forgotten: nothing to give back.
        let mut late = WindowState::default();
        let held = late.take(&p, 0, 4, 1_000).held_at;
        assert!(late.take(&p, 20_000, 1, 0).decision.is_allowed());
        late.give_back(&[(held, 3)]);
        assert_eq!(late.take(&p, 20_001, 10, 0).granted, 9);
    }

    #[test]
    fn leased_tokens_stay_counted_until_a_window_after_their_lease_ends() {
        let p = Policy {
            limit: 5,
            window_ms: 10_000,
            cooldown_ms: 0,
        };
        // A request's own lease: its first token now, the other four at the lease's end.
        let mut w = WindowState::default();
        assert_eq!(w.take(&p, 0, 5, 1_000).granted, 5);
        assert!(
            w.decide(&p, 10_500).is_allowed(),
            "the first one's slot is free"
        );
        assert!(
            !w.decide(&p, 10_600).is_allowed(),
            "the four are still counted"
        );
        assert!(w.decide(&p, 11_000).is_allowed());
        // A refill ahead of need: all five at the lease's end, the first too.
        let mut w = WindowState::default();
        assert_eq!(w.take_ahead(&p, 0, 5, 1_000).granted, 5);
        assert!(!w.decide(&p, 10_999).is_allowed());
        assert!(w.decide(&p, 11_000).is_allowed());
        // Never more than what is left.
        let mut w = WindowState::default();
        assert_eq!(w.take(&p, 0, 3, 1_000).granted, 3);
        assert_eq!(w.take_ahead(&p, 1, 9, 1_000).granted, 2);
        assert!(!w.take(&p, 2, 1, 0).decision.is_allowed());
    }

    const IP: Policy = Policy {
        limit: 40,
        window_ms: 10_000,
        cooldown_ms: 10_000,
    };
    const PRINCIPAL: Policy = Policy {
        limit: 600,
        window_ms: 60_000,
        cooldown_ms: 0,
    };

    fn run(policy: &Policy, state: &mut WindowState, times: &[i64]) -> Vec<bool> {
        times
            .iter()
            .map(|&t| state.decide(policy, t).is_allowed())
            .collect()
    }

    #[test]
    fn the_41st_request_is_rejected_and_starts_the_cooldown() {
        let mut s = WindowState::default();
        let allowed = run(&IP, &mut s, &[1_000; 40]);
        assert!(allowed.iter().all(|&a| a));
        assert_eq!(
            s.decide(&IP, 1_000),
            Decision::Limited {
                retry_after_ms: 10_000
            }
        );
    }

    #[test]
    fn window_edges_are_exact() {
        // Without a cooldown, so only the window decides.
        let p = Policy {
            cooldown_ms: 0,
            ..IP
        };
        let mut s = WindowState::default();
        run(&p, &mut s, &[0; 40]);
        assert!(
            !s.decide(&p, 9_999).is_allowed(),
            "at 9.999 s the first 40 still count"
        );
        assert!(
            s.decide(&p, 10_000).is_allowed(),
            "at 10.000 s they have left the window"
        );
    }

    #[test]
    fn the_remaining_count_and_reset_are_reported() {
        let mut s = WindowState::default();
        assert_eq!(
            s.decide(&IP, 5_000),
            Decision::Allowed {
                remaining: 39,
                reset_ms: 10_000
            }
        );
        assert_eq!(
            s.decide(&IP, 7_500),
            Decision::Allowed {
                remaining: 38,
                reset_ms: 7_500
            }
        );
    }

    #[test]
    fn rejected_requests_do_not_extend_the_cooldown() {
        let mut s = WindowState::default();
        run(&IP, &mut s, &[0; 40]);
        assert!(!s.decide(&IP, 100).is_allowed()); // cooldown until 10_100
        for t in (200..10_100).step_by(500) {
            assert_eq!(
                s.decide(&IP, t),
                Decision::Limited {
                    retry_after_ms: 10_100 - t
                }
            );
        }
        assert!(!s.decide(&IP, 10_099).is_allowed());
        assert!(
            s.decide(&IP, 10_100).is_allowed(),
            "the cooldown lifts on time"
        );
    }

    #[test]
    fn without_cooldown_retry_after_points_at_the_oldest_expiry() {
        let mut s = WindowState::default();
        run(&PRINCIPAL, &mut s, &vec![1_000; 600]);
        assert_eq!(
            s.decide(&PRINCIPAL, 31_000),
            Decision::Limited {
                retry_after_ms: 30_000
            }
        );
        assert!(s.decide(&PRINCIPAL, 61_000).is_allowed());
    }

    #[test]
    fn retry_after_seconds_round_up_and_are_at_least_one() {
        assert_eq!(whole_seconds(0), 1);
        assert_eq!(whole_seconds(1), 1);
        assert_eq!(whole_seconds(1_000), 1);
        assert_eq!(whole_seconds(1_001), 2);
        assert_eq!(whole_seconds(10_000), 10);
    }

    #[test]
    fn ip_keys_group_ipv6_by_64_and_ignore_garbage() {
        assert_eq!(client_ip_key(Some("203.0.113.7")), "ip:203.0.113.7");
        assert_eq!(
            client_ip_key(Some("2001:db8:1:2:aaaa::1")),
            "ip:2001:db8:1:2::/64"
        );
        assert_eq!(
            client_ip_key(Some("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            "ip:2001:db8:1:2::/64"
        );
        assert_ne!(
            client_ip_key(Some("2001:db8:1:3::1")),
            client_ip_key(Some("2001:db8:1:2::1"))
        );
        assert_eq!(client_ip_key(Some("::ffff:203.0.113.7")), "ip:203.0.113.7");
        assert_eq!(client_ip_key(Some("not an ip")), "ip:unknown");
        assert_eq!(client_ip_key(None), "ip:unknown");
    }

    #[test]
    fn headers_follow_the_draft_syntax() {
        let l = Limits::default();
        let (policy, state) = rate_limit_headers(&[
            HeaderEntry {
                name: "ip",
                policy: &l.ip,
                remaining: 39,
                reset_ms: 10_000,
            },
            HeaderEntry {
                name: "principal",
                policy: &l.principal,
                remaining: 0,
                reset_ms: 1,
            },
        ]);
        assert_eq!(policy, "\"ip\";q=40;w=10, \"principal\";q=600;w=60");
        assert_eq!(state, "\"ip\";r=39;t=10, \"principal\";r=0;t=1");
    }

    #[test]
    fn state_stays_bounded_and_idle_time_is_known() {
        let mut s = WindowState::default();
        for t in 0..100_000 {
            s.decide(&IP, t);
            assert!(s.accepted.len() <= IP.limit as usize);
            assert!(s.accepted.iter().map(|&(_, n)| n).sum::<u32>() <= IP.limit);
        }
        assert!(s.idle_after(&IP) <= 100_000 + IP.window_ms + IP.cooldown_ms);
        let mut fresh = WindowState::default();
        fresh.decide(&IP, 5);
        assert_eq!(fresh.idle_after(&IP), 10_005);
    }

    /// The obvious model: every accepted timestamp kept forever, counted on each request.
    struct Reference {
        accepted: Vec<i64>,
        cooldown_until: i64,
    }

    impl Reference {
        fn decide(&mut self, p: &Policy, now: i64) -> bool {
            if now < self.cooldown_until {
                return false;
            }
            let in_window = self
                .accepted
                .iter()
                .filter(|&&t| t > now - p.window_ms)
                .count();
            if in_window < p.limit as usize {
                self.accepted.push(now);
                true
            } else {
                if p.cooldown_ms > 0 {
                    self.cooldown_until = now + p.cooldown_ms;
                }
                false
            }
        }
    }

    #[test]
    fn agrees_with_a_reference_model_on_long_random_sequences() {
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..200 {
            let policy = Policy {
                limit: 1 + (next() % 50) as u32,
                window_ms: 1 + (next() % 20_000) as i64,
                cooldown_ms: if round % 2 == 0 {
                    0
                } else {
                    (next() % 15_000) as i64
                },
            };
            let mut fast = WindowState::default();
            let mut slow = Reference {
                accepted: Vec::new(),
                cooldown_until: 0,
            };
            let mut now = 0i64;
            for _ in 0..2_000 {
                // Bursts (same millisecond), short gaps and long pauses.
                now += match next() % 10 {
                    0..=3 => 0,
                    4..=8 => (next() % 500) as i64,
                    _ => (next() % 30_000) as i64,
                };
                assert_eq!(
                    fast.decide(&policy, now).is_allowed(),
                    slow.decide(&policy, now),
                    "round {round} policy {policy:?} at {now}"
                );
            }
        }
    }

    #[test]
    fn a_burst_in_one_millisecond_is_one_bucket() {
        let mut s = WindowState::default();
        run(&PRINCIPAL, &mut s, &vec![1_000; 600]);
        assert_eq!(s.accepted.len(), 1);
        assert!(!s.decide(&PRINCIPAL, 60_999).is_allowed());
        assert!(s.decide(&PRINCIPAL, 61_000).is_allowed());
    }

    /// Above the exact range: never more than `limit` in any true window, at most 1/128 of
    /// a window late to free a slot, and a state of at most 129 buckets.
    #[test]
    fn large_limits_use_coarse_buckets_that_never_let_too_many_through() {
        let p = Policy {
            limit: 5_000,
            window_ms: 10_000,
            cooldown_ms: 0,
        };
        let mut s = WindowState::default();
        let mut accepted = VecDeque::new();
        let mut seed: u64 = 0xDEAD_BEEF_1234_5678;
        let mut now = 0i64;
        for _ in 0..200_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            now += (seed % 3) as i64;
            if s.decide(&p, now).is_allowed() {
                accepted.push_back(now);
            }
            while accepted.front().is_some_and(|&t| t <= now - p.window_ms) {
                accepted.pop_front();
            }
            assert!(accepted.len() <= p.limit as usize, "too many at {now}");
            assert!(s.accepted.len() <= 129);
        }
        // A full window, then quiet: everything is free again one bucket after the window.
        let later = now + p.window_ms + p.bucket_ms();
        assert_eq!(
            s.decide(&p, later),
            Decision::Allowed {
                remaining: p.limit - 1,
                reset_ms: p.window_ms + p.bucket_ms() - 1 - later.rem_euclid(p.bucket_ms()),
            }
        );
    }
}
