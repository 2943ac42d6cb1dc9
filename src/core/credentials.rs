//! A team's provider credential: requests, the masked preview, the record and its ETag.

use super::{
    body::{required, Fields, FromBody},
    error::{ApiError, ErrorKind},
    json::{Obj, ToJson},
    providers::{self, Provider},
    time::{rfc3339, UnixMillis},
    verify::{Verification, VerificationView},
};

pub const FALLBACK_NEEDS_ACTIVE_KEY: &str = "cloud_fallback requires an active API key";

#[derive(Debug)]
pub struct PutCredential {
    pub api_key: String,
    /// `false` when left out.
    pub cloud_fallback: bool,
}

impl FromBody for PutCredential {
    const FIELDS: &'static [&'static str] = &["api_key", "cloud_fallback"];
    fn read(f: &Fields<'_>) -> Result<Self, ApiError> {
        let api_key = f.string("api_key")?;
        let cloud_fallback = f.bool("cloud_fallback")?.unwrap_or(false);
        Ok(PutCredential {
            api_key: required("api_key", api_key)?,
            cloud_fallback,
        })
    }
}

impl PutCredential {
    pub fn validate(&self) -> Result<(), ApiError> {
        let len = self.api_key.chars().count();
        if !(1..=512).contains(&len) {
            return Err(ApiError::invalid_request(
                "`api_key` must be 1 to 512 characters",
            ));
        }
        if self.api_key.trim().is_empty() {
            return Err(ApiError::invalid_request("`api_key` must not be blank"));
        }
        if self.api_key.chars().any(char::is_control) {
            return Err(ApiError::invalid_request(
                "`api_key` must not contain control characters",
            ));
        }
        if !header_safe(&self.api_key) {
            return Err(ApiError::invalid_request(
                "`api_key` must be ASCII: it is sent to the provider in an HTTP header",
            ));
        }
        Ok(())
    }
}

/// Whether a key can travel as `Authorization: Bearer <key>`: printable ASCII and spaces.
/// Checked before any header is set, because the runtime logs a non-ASCII header value
/// it is given, and a key must never reach a log.
pub fn header_safe(key: &str) -> bool {
    key.bytes().all(|b| (0x20..0x7f).contains(&b))
}

#[derive(Debug)]
pub struct PatchCredential {
    pub cloud_fallback: bool,
}

impl FromBody for PatchCredential {
    const FIELDS: &'static [&'static str] = &["cloud_fallback"];
    fn read(f: &Fields<'_>) -> Result<Self, ApiError> {
        let cloud_fallback = f.bool("cloud_fallback")?;
        Ok(PatchCredential {
            cloud_fallback: required("cloud_fallback", cloud_fallback)?,
        })
    }
}

/// First 8 + `...` + last 4 characters, but never more than a third of the key: a short
/// key shows proportionally less, and a key under 3 characters shows nothing.
pub fn preview(api_key: &str) -> String {
    let chars: Vec<char> = api_key.chars().collect();
    let shown = (chars.len() / 3).min(12);
    let head = shown * 2 / 3;
    let tail = shown - head;
    let mut out: String = chars[..head].iter().collect();
    out.push_str("...");
    out.extend(&chars[chars.len() - tail..]);
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Active,
    Revoked,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Revoked => "revoked",
        }
    }
    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "active" => Some(Status::Active),
            "revoked" => Some(Status::Revoked),
            _ => None,
        }
    }
}

/// A stored credential as the API sees it; its ciphertext never leaves the repository
/// except for key rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRecord {
    pub provider: &'static Provider,
    pub status: Status,
    pub cloud_fallback: bool,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
    pub key_preview: String,
    /// Bumped by every change, verification included; the ETag. `last_used_at` alone
    /// does not bump it, so a busy proxy never turns a client's `If-Match` stale.
    pub version: i64,
    pub verification: Verification,
    /// The last proxied call, written at most once a minute.
    pub last_used_at: Option<UnixMillis>,
}

pub struct CredentialView<'a> {
    pub provider_name: &'static str,
    pub credential_status: &'static str,
    pub cloud_fallback: bool,
    pub created_at: String,
    pub updated_at: String,
    pub key_preview: &'a str,
    pub verification: VerificationView,
    pub last_used_at: Option<String>,
}

impl ToJson for CredentialView<'_> {
    fn to_json(&self) -> String {
        Obj::new()
            .str("provider_name", self.provider_name)
            .str("credential_status", self.credential_status)
            .bool("cloud_fallback", self.cloud_fallback)
            .str("created_at", &self.created_at)
            .str("updated_at", &self.updated_at)
            .str("key_preview", self.key_preview)
            .raw("verification", &self.verification.to_json())
            .opt_str("last_used_at", self.last_used_at.as_deref())
            .done()
    }
}

impl CredentialRecord {
    pub fn view(&self) -> CredentialView<'_> {
        CredentialView {
            provider_name: self.provider.name,
            credential_status: self.status.as_str(),
            cloud_fallback: self.cloud_fallback,
            created_at: rfc3339(self.created_at),
            updated_at: rfc3339(self.updated_at),
            key_preview: &self.key_preview,
            verification: self.verification.view(),
            last_used_at: self.last_used_at.map(rfc3339),
        }
    }

    pub fn is_active(&self) -> bool {
        self.status == Status::Active
    }

    pub fn etag(&self) -> String {
        version_etag(self.version)
    }
}

pub fn provider_for(slug: &str) -> Result<&'static Provider, ApiError> {
    providers::by_slug(slug).ok_or_else(|| ApiError::not_found("Unknown cloud provider"))
}

/// Evaluates `If-Match` against the current record (RFC 9110 §13.1.1, strong comparison).
/// Returns the version the write must still find: `Some` for a list of ETags that names the
/// current one, `None` without the header or for `*`, which matches any current
/// representation. 412 when nothing matches, and for `*` when there is no credential.
pub fn check_if_match(
    header: Option<&str>,
    current: Option<&CredentialRecord>,
) -> Result<Option<i64>, ApiError> {
    if_match_version(header, current.map(|c| c.version), "credential")
}

/// [`check_if_match`] for anything whose ETag is its quoted `version` (a credential, a
/// team); `current` is `None` when there is no current representation. `what` names it in
/// the 412.
pub fn if_match_version(
    header: Option<&str>,
    current: Option<i64>,
    what: &str,
) -> Result<Option<i64>, ApiError> {
    let Some(header) = header else {
        return Ok(None);
    };
    let stale = || precondition_failed(what);
    let current = current.ok_or_else(stale)?;
    if if_match_is_any(header) {
        return Ok(None);
    }
    let etag = version_etag(current);
    if header.split(',').map(str::trim).any(|tag| tag == etag) {
        Ok(Some(current))
    } else {
        Err(stale())
    }
}

/// The 412 of an `If-Match` that names no current representation of `what`.
pub fn precondition_failed(what: &str) -> ApiError {
    ApiError::new(
        ErrorKind::PreconditionFailed,
        format!("The {what} has changed since you read it (If-Match)"),
    )
}

/// The strong ETag of a versioned row: its version, quoted.
pub fn version_etag(version: i64) -> String {
    format!("\"{version}\"")
}

/// What a credential PUT requires of the row it replaces, checked by the write itself, in
/// its own statements: the row still at `expected`, and (for any `If-Match`) still there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Precondition {
    pub expected: Option<i64>,
    pub must_exist: bool,
}

impl Precondition {
    /// `If-Match` evaluated against the row just read ([`check_if_match`]): 412 at once when
    /// it names no current representation.
    pub fn against(
        header: Option<&str>,
        current: Option<&CredentialRecord>,
    ) -> Result<Precondition, ApiError> {
        Ok(Precondition {
            expected: check_if_match(header, current)?,
            must_exist: header.is_some(),
        })
    }

    /// `If-Match` as the write alone can decide it, with no read first: none, `*`, or one
    /// strong ETag. `None` for anything else (a list, a weak or malformed tag), which is
    /// decided against the row read.
    pub fn from_header(header: Option<&str>) -> Option<Precondition> {
        let Some(header) = header.map(str::trim) else {
            return Some(Precondition {
                expected: None,
                must_exist: false,
            });
        };
        let expected = if header == "*" {
            None
        } else {
            let version: i64 = header.strip_prefix('"')?.strip_suffix('"')?.parse().ok()?;
            // One spelling only: "7", not "07" or "+7".
            Some(Some(version).filter(|v| version_etag(*v) == header)?)
        };
        Some(Precondition {
            expected,
            must_exist: true,
        })
    }
}

/// `If-Match: *`: any current representation will do.
pub fn if_match_is_any(header: &str) -> bool {
    header.split(',').map(str::trim).any(|tag| tag == "*")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_put_decides_if_match_itself_when_the_header_alone_can_say_what_it_needs() {
        let p = |expected, must_exist| {
            Some(Precondition {
                expected,
                must_exist,
            })
        };
        assert_eq!(Precondition::from_header(None), p(None, false));
        assert_eq!(Precondition::from_header(Some("*")), p(None, true));
        assert_eq!(Precondition::from_header(Some(" \"7\" ")), p(Some(7), true));
        for other in [
            "\"07\"",
            "\"+7\"",
            "W/\"7\"",
            "\"7\", \"8\"",
            "7",
            "\"\"",
            "\"x\"",
        ] {
            assert_eq!(Precondition::from_header(Some(other)), None, "{other}");
        }
        // Against a row read: 412 at once, or what the write must still find.
        let row = record(7);
        assert_eq!(
            Precondition::against(Some("\"7\", \"8\""), Some(&row)).unwrap(),
            Precondition {
                expected: Some(7),
                must_exist: true
            }
        );
        assert!(Precondition::against(Some("*"), None).is_err());
        assert_eq!(
            Precondition::against(None, None).unwrap(),
            Precondition {
                expected: None,
                must_exist: false
            }
        );
    }

    #[test]
    fn previews_never_show_more_than_a_third() {
        for len in 1..=512 {
            let key: String = (0..len)
                .map(|i| char::from(b'a' + (i % 26) as u8))
                .collect();
            let p = preview(&key);
            let shown = p.chars().count() - 3;
            assert!(p.contains("..."), "{len}: {p}");
            assert!(shown * 3 <= len, "{len}: {p} shows {shown}");
            assert!(shown <= 12);
            assert!(key.starts_with(p.split("...").next().unwrap()));
            assert!(key.ends_with(p.split("...").nth(1).unwrap()));
        }
        assert_eq!(
            preview("cfy_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxyyyy"),
            "cfy_xxxx...yyyy"
        );
        assert_eq!(preview("ab"), "...");
        assert_eq!(preview("abcdefghi"), "ab...i");
        // Characters, not bytes: multi-byte keys are cut on character boundaries.
        assert_eq!(
            preview(&"é".repeat(36)),
            format!("{}...{}", "é".repeat(8), "é".repeat(4))
        );
    }

    #[test]
    fn api_key_validation() {
        let put = |k: &str| {
            PutCredential {
                api_key: k.into(),
                cloud_fallback: false,
            }
            .validate()
        };
        assert!(put("cfy_abc").is_ok());
        assert!(put(&"x".repeat(512)).is_ok());
        assert!(put("comfyui-a b~").is_ok());
        for bad in [
            "",
            "   ",
            "\t",
            "abc\ndef",
            "a\u{0}b",
            &"x".repeat(513),
            &"é".repeat(512),
            "cfy_\u{a0}nbsp",
            "cfy_\u{201c}quoted\u{201d}",
        ] {
            assert_eq!(put(bad).unwrap_err().status(), 400, "{bad:?}");
        }
    }

    fn record(version: i64) -> CredentialRecord {
        CredentialRecord {
            provider: providers::by_slug("comfy-cloud").unwrap(),
            status: Status::Active,
            cloud_fallback: false,
            created_at: 1_748_779_200_000,
            updated_at: 1_749_976_200_000,
            key_preview: "cfy_xxxx...xxxx".into(),
            version,
            verification: Verification::from_answer(
                crate::core::verify::ProviderAnswer::Status(200),
                1_749_976_200_000,
            ),
            last_used_at: None,
        }
    }

    #[test]
    fn the_view_is_the_seed_shape_with_verification_and_last_use() {
        let v = serde_json::from_str::<serde_json::Value>(&record(1).view().to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "provider_name": "comfy_cloud",
                "credential_status": "active",
                "cloud_fallback": false,
                "created_at": "2025-06-01T12:00:00Z",
                "updated_at": "2025-06-15T08:30:00Z",
                "key_preview": "cfy_xxxx...xxxx",
                "verification": {"state": "verified", "checked_at": "2025-06-15T08:30:00Z"},
                "last_used_at": null
            })
        );
    }

    #[test]
    fn if_match_uses_strong_comparison() {
        let r = record(3);
        assert_eq!(check_if_match(None, Some(&r)), Ok(None));
        assert_eq!(check_if_match(Some("\"3\""), Some(&r)), Ok(Some(3)));
        assert_eq!(check_if_match(Some("\"1\", \"3\""), Some(&r)), Ok(Some(3)));
        // `*` matches whatever the current version is, so it pins none.
        assert_eq!(check_if_match(Some("*"), Some(&r)), Ok(None));
        assert!(if_match_is_any(" * ") && !if_match_is_any("\"3\""));
        assert_eq!(
            check_if_match(Some("W/\"3\""), Some(&r))
                .unwrap_err()
                .status(),
            412
        );
        assert_eq!(
            check_if_match(Some("\"2\""), Some(&r))
                .unwrap_err()
                .status(),
            412
        );
        assert_eq!(check_if_match(Some("*"), None).unwrap_err().status(), 412);
    }
}
