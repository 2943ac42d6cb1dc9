//! Checking a key with the provider: what each answer means, and the credential's
//! `verification` object. The call itself is the edge's (`edge/provider.rs`); only its
//! outcome comes in here, so no body or header of the provider's is ever echoed.

use super::{
    config::Environment,
    error::{ApiError, ErrorKind},
    json::{Obj, ToJson},
    time::{rfc3339, UnixMillis},
};

/// Where the check goes, under `COMFY_CLOUD_ORIGIN`.
pub const ACCOUNT_PATH: &str = "/developer/api/v1/account";

/// The most of the check's answer that is read, to be discarded. Read to its end, the
/// connection to the provider is kept for the next check; a cancelled body closes it, so
/// every PUT would open a new one (and at the edge, do a new TLS handshake). A larger
/// answer is cancelled.
pub const MAX_DRAINED_ANSWER: u64 = 64 * 1024;

/// Whether to keep reading the check's answer, of this `Content-Length` (if any), after
/// `read` bytes of it, to discard ([`MAX_DRAINED_ANSWER`]); otherwise it is cancelled. Its
/// content is never looked at.
pub fn keeps_draining(content_length: Option<&str>, read: u64) -> bool {
    let declared = content_length.map(|value| value.trim().parse::<u64>().ok());
    let declared_small = match declared {
        None => true,
        Some(Some(length)) => length <= MAX_DRAINED_ANSWER,
        // A length that is not one number is not to be trusted: cancel.
        Some(None) => false,
    };
    declared_small && read <= MAX_DRAINED_ANSWER
}

/// What came back from the provider, as far as the decision needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderAnswer {
    Status(u16),
    Timeout,
    NetworkError,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Verified,
    Unverified,
    Rejected,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Verified => "verified",
            State::Unverified => "unverified",
            State::Rejected => "rejected",
        }
    }
    pub fn parse(s: &str) -> Option<State> {
        match s {
            "verified" => Some(State::Verified),
            "unverified" => Some(State::Unverified),
            "rejected" => Some(State::Rejected),
            _ => None,
        }
    }
}

/// Why a key is not `verified`. Stable strings: clients may branch on them.
pub mod reason {
    /// 429, 5xx, a timeout or a network error: try again later.
    pub const PROVIDER_UNAVAILABLE: &str = "provider_unavailable";
    /// An answer that is neither a yes nor a no (a redirect, a 404): the origin is likely
    /// misconfigured.
    pub const UNEXPECTED_RESPONSE: &str = "provider_unexpected_response";
    /// The provider answered 401 or 403 to a check.
    pub const PROVIDER_REJECTED: &str = "provider_rejected";
    /// The provider answered 401 to a proxied call.
    pub const REJECTED_ON_USE: &str = "provider_rejected_on_use";
    /// `COMFY_CLOUD_VERIFY=off`.
    pub const DISABLED: &str = "verification_disabled";
    /// Stored before verification existed, never checked since.
    pub const NOT_CHECKED: &str = "not_checked";
}

/// A credential's verification, as stored and shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub state: State,
    pub checked_at: Option<UnixMillis>,
    pub reason: Option<&'static str>,
}

impl Verification {
    /// The verification a check's answer gives, at `now`.
    pub fn from_answer(answer: ProviderAnswer, now: UnixMillis) -> Verification {
        let (state, reason) = match answer {
            ProviderAnswer::Status(200..=299) => (State::Verified, None),
            ProviderAnswer::Status(401 | 403) => (State::Rejected, Some(reason::PROVIDER_REJECTED)),
            ProviderAnswer::Status(429 | 500..=599)
            | ProviderAnswer::Timeout
            | ProviderAnswer::NetworkError => {
                (State::Unverified, Some(reason::PROVIDER_UNAVAILABLE))
            }
            ProviderAnswer::Status(_) => (State::Unverified, Some(reason::UNEXPECTED_RESPONSE)),
        };
        Verification {
            state,
            checked_at: Some(now),
            reason,
        }
    }

    /// A key saved while verification is turned off.
    pub fn disabled() -> Verification {
        Verification {
            state: State::Unverified,
            checked_at: None,
            reason: Some(reason::DISABLED),
        }
    }

    /// An upstream 401 seen by the proxy.
    pub fn rejected_on_use(now: UnixMillis) -> Verification {
        Verification {
            state: State::Rejected,
            checked_at: Some(now),
            reason: Some(reason::REJECTED_ON_USE),
        }
    }

    /// As read back from D1; an unknown reason string is dropped rather than trusted.
    pub fn stored(
        state: State,
        checked_at: Option<UnixMillis>,
        stored_reason: Option<&str>,
    ) -> Self {
        let known = [
            reason::PROVIDER_UNAVAILABLE,
            reason::UNEXPECTED_RESPONSE,
            reason::PROVIDER_REJECTED,
            reason::REJECTED_ON_USE,
            reason::DISABLED,
            reason::NOT_CHECKED,
        ];
        Verification {
            state,
            checked_at,
            reason: stored_reason.and_then(|r| known.into_iter().find(|k| *k == r)),
        }
    }

    pub fn view(&self) -> VerificationView {
        VerificationView {
            state: self.state.as_str(),
            checked_at: self.checked_at.map(rfc3339),
            reason: self.reason,
        }
    }

    /// The audit action when a credential's state moves to this one.
    pub fn audit_action(&self) -> &'static str {
        match self.state {
            State::Verified => "credential.verification.verified",
            State::Unverified => "credential.verification.unverified",
            State::Rejected => "credential.verification.rejected",
        }
    }
}

pub struct VerificationView {
    pub state: &'static str,
    pub checked_at: Option<String>,
    /// Left out when `None`.
    pub reason: Option<&'static str>,
}

impl ToJson for VerificationView {
    fn to_json(&self) -> String {
        let o = Obj::new()
            .str("state", self.state)
            .opt_str("checked_at", self.checked_at.as_deref());
        match self.reason {
            Some(reason) => o.str("reason", reason),
            None => o,
        }
        .done()
    }
}

/// The 422 of a PUT whose key the provider refused. It names the environment this
/// deployment talks to, because the commonest cause is a key from the other one (seed 002).
pub fn rejected_on_save(environment: Environment, origin: &str) -> ApiError {
    let message = match environment {
        Environment::Production => format!(
            "ComfyUI Cloud production ({origin}) rejected this API key. This deployment talks to \
             production, so a key from the staging environment is rejected; use a production key \
             from platform.comfy.org"
        ),
        Environment::Staging => format!(
            "ComfyUI Cloud staging ({origin}) rejected this API key. This deployment talks to \
             staging, so a key from the production environment is rejected; use a staging key"
        ),
        Environment::Development => format!(
            "The development provider ({origin}) rejected this API key. This deployment talks to \
             a local stub of ComfyUI Cloud, which accepts only the keys it was given; a staging \
             or production key is rejected here"
        ),
    };
    ApiError::new(ErrorKind::ProviderKeyRejected, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: UnixMillis = 1_750_000_000_000;

    #[test]
    fn only_a_small_answer_is_drained() {
        for (length, read, drained) in [
            (None, 0, true),
            (None, 65_536, true),
            (None, 65_537, false),
            (Some("312"), 0, true),
            (Some(" 65536 "), 312, true),
            (Some("65537"), 0, false),
            (Some("-1"), 0, false),
            (Some("12, 12"), 0, false),
            (Some(""), 0, false),
        ] {
            assert_eq!(
                keeps_draining(length, read),
                drained,
                "{length:?} after {read}"
            );
        }
    }

    #[test]
    fn every_answer_maps_to_the_contract_outcome() {
        use ProviderAnswer::*;
        let cases = [
            (Status(200), State::Verified, None),
            (
                Status(401),
                State::Rejected,
                Some(reason::PROVIDER_REJECTED),
            ),
            (
                Status(403),
                State::Rejected,
                Some(reason::PROVIDER_REJECTED),
            ),
            (
                Status(429),
                State::Unverified,
                Some(reason::PROVIDER_UNAVAILABLE),
            ),
            (
                Status(500),
                State::Unverified,
                Some(reason::PROVIDER_UNAVAILABLE),
            ),
            (
                Status(503),
                State::Unverified,
                Some(reason::PROVIDER_UNAVAILABLE),
            ),
            (
                Timeout,
                State::Unverified,
                Some(reason::PROVIDER_UNAVAILABLE),
            ),
            (
                NetworkError,
                State::Unverified,
                Some(reason::PROVIDER_UNAVAILABLE),
            ),
            (
                Status(302),
                State::Unverified,
                Some(reason::UNEXPECTED_RESPONSE),
            ),
            (
                Status(404),
                State::Unverified,
                Some(reason::UNEXPECTED_RESPONSE),
            ),
        ];
        for (answer, state, why) in cases {
            let v = Verification::from_answer(answer, NOW);
            assert_eq!(
                (v.state, v.reason, v.checked_at),
                (state, why, Some(NOW)),
                "{answer:?}"
            );
        }
    }

    #[test]
    fn the_view_has_state_time_and_an_optional_reason() {
        let json = |view: VerificationView| {
            serde_json::from_str::<serde_json::Value>(&view.to_json()).unwrap()
        };
        let v = json(Verification::from_answer(ProviderAnswer::Status(200), NOW).view());
        assert_eq!(
            v,
            serde_json::json!({"state": "verified", "checked_at": "2025-06-15T15:06:40Z"})
        );
        let v = json(Verification::disabled().view());
        assert_eq!(
            v,
            serde_json::json!({"state": "unverified", "checked_at": null, "reason": "verification_disabled"})
        );
        assert_eq!(
            Verification::stored(State::Rejected, None, Some("<script>")).reason,
            None
        );
    }

    #[test]
    fn the_rejection_names_this_deployments_environment() {
        let prod = rejected_on_save(Environment::Production, "https://cloud.comfy.org");
        assert_eq!(
            (prod.status(), prod.kind.type_name()),
            (422, "provider_key_rejected")
        );
        assert!(prod
            .message
            .contains("production (https://cloud.comfy.org)"));
        assert!(prod
            .message
            .contains("key from the staging environment is rejected"));
        let staging = rejected_on_save(Environment::Staging, "https://stagingcloud.comfy.org");
        assert!(staging
            .message
            .contains("staging (https://stagingcloud.comfy.org)"));
        assert!(staging
            .message
            .contains("key from the production environment is rejected"));
    }
}
