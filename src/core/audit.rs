//! The audit trail: one event per change, written in the same D1 batch as the change.

use super::{
    error::ApiError,
    ids::parse_uuid,
    json::{Obj, ToJson},
    time::rfc3339,
    time::UnixMillis,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub id: String,
    pub team_id: String,
    pub actor_kind: String,
    pub actor_id: String,
    pub action: String,
    pub provider: Option<String>,
    /// What the event is about: the member's user id, the key's id, the team's id.
    pub subject: Option<String>,
    pub created_at: UnixMillis,
    pub request_id: String,
}

pub struct AuditEventView<'a> {
    pub id: &'a str,
    pub team_id: &'a str,
    pub actor_kind: &'a str,
    pub actor_id: &'a str,
    pub action: &'a str,
    pub provider: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub created_at: String,
    pub request_id: &'a str,
}

impl ToJson for AuditEventView<'_> {
    fn to_json(&self) -> String {
        Obj::new()
            .str("id", self.id)
            .str("team_id", self.team_id)
            .str("actor_kind", self.actor_kind)
            .str("actor_id", self.actor_id)
            .str("action", self.action)
            .opt_str("provider", self.provider)
            .opt_str("subject", self.subject)
            .str("created_at", &self.created_at)
            .str("request_id", self.request_id)
            .done()
    }
}

impl AuditEvent {
    pub fn view(&self) -> AuditEventView<'_> {
        AuditEventView {
            id: &self.id,
            team_id: &self.team_id,
            actor_kind: &self.actor_kind,
            actor_id: &self.actor_id,
            action: &self.action,
            provider: self.provider.as_deref(),
            subject: self.subject.as_deref(),
            created_at: rfc3339(self.created_at),
            request_id: &self.request_id,
        }
    }
}

pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 200;

/// Every action the audit trail records, for the `action` filter.
pub const ACTIONS: [&str; 17] = [
    "credential.put",
    "credential.patch",
    "credential.delete",
    "credential.reencrypt",
    "credential.verification.verified",
    "credential.verification.unverified",
    "credential.verification.rejected",
    "task.routed_to_cloud",
    "task.no_compute",
    "team.created",
    "team.renamed",
    "team.deleted",
    "member.added",
    "member.role_changed",
    "member.removed",
    "api_key.created",
    "api_key.revoked",
];

/// `?limit=&cursor=&action=&since=&until=`: a page size, the id of the last event already
/// seen, and optional filters. Event ids are UUIDv7, so "older than the cursor" is "id below
/// the cursor". `since` is inclusive, `until` exclusive.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: usize,
    pub before: Option<String>,
    pub action: Option<String>,
    pub since: Option<UnixMillis>,
    pub until: Option<UnixMillis>,
}

pub fn page_request<'a>(
    query: impl Iterator<Item = (String, String)> + 'a,
) -> Result<PageRequest, ApiError> {
    let mut page = PageRequest {
        limit: DEFAULT_PAGE,
        ..Default::default()
    };
    let time = |name: &str, value: &str| {
        super::time::parse_rfc3339(value).ok_or_else(|| {
            ApiError::invalid_request(format!("`{name}` must be an RFC 3339 timestamp"))
        })
    };
    for (name, value) in query {
        match name.as_str() {
            "limit" => page.limit = super::pages::parse_limit(&value)?,
            "cursor" => {
                let id = parse_uuid(&value).ok_or_else(|| {
                    ApiError::invalid_request("`cursor` is not a cursor from this API")
                })?;
                page.before = Some(id.to_string());
            }
            "action" => {
                let known = ACTIONS.iter().find(|a| **a == value).ok_or_else(|| {
                    ApiError::invalid_request("`action` is not an action the audit trail records")
                })?;
                page.action = Some(known.to_string());
            }
            "since" => page.since = Some(time("since", &value)?),
            "until" => page.until = Some(time("until", &value)?),
            _ => return Err(ApiError::invalid_request("Unknown query parameter")),
        }
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Result<PageRequest, ApiError> {
        page_request(pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())))
    }

    #[test]
    fn page_parameters_are_validated() {
        assert_eq!(
            q(&[]).unwrap(),
            PageRequest {
                limit: 50,
                ..Default::default()
            }
        );
        assert_eq!(q(&[("limit", "2")]).unwrap().limit, 2);
        let id = "019abc12-4567-7890-abcd-ef1234567891";
        assert_eq!(q(&[("cursor", id)]).unwrap().before.as_deref(), Some(id));
        let filtered = q(&[
            ("action", "member.added"),
            ("since", "2025-06-01T12:00:00Z"),
            ("until", "2025-06-02T12:00:00Z"),
        ])
        .unwrap();
        assert_eq!(filtered.action.as_deref(), Some("member.added"));
        assert_eq!(filtered.since, Some(1_748_779_200_000));
        assert_eq!(filtered.until, Some(1_748_865_600_000));
        for bad in [
            ("limit", "0"),
            ("limit", "201"),
            ("limit", "x"),
            ("cursor", "abc"),
            ("page", "2"),
            ("action", "credential.steal"),
            ("since", "yesterday"),
            ("until", "2025-06-01"),
        ] {
            assert_eq!(q(&[bad]).unwrap_err().status(), 400, "{bad:?}");
        }
    }
}
