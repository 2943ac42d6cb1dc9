//! The audit trail: one event per change, written in the same D1 batch as the change.

use serde::Serialize;

use super::{error::ApiError, ids::parse_uuid, time::rfc3339, time::UnixMillis};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub id: String,
    pub team_id: String,
    pub actor_kind: String,
    pub actor_id: String,
    pub action: String,
    pub provider: Option<String>,
    pub created_at: UnixMillis,
    pub request_id: String,
}

#[derive(Serialize)]
pub struct AuditEventView<'a> {
    pub id: &'a str,
    pub team_id: &'a str,
    pub actor_kind: &'a str,
    pub actor_id: &'a str,
    pub action: &'a str,
    pub provider: Option<&'a str>,
    pub created_at: String,
    pub request_id: &'a str,
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
            created_at: rfc3339(self.created_at),
            request_id: &self.request_id,
        }
    }
}

pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 200;

/// `?limit=&cursor=`: a page size and the id of the last event already seen. Event ids are
/// UUIDv7, so "older than the cursor" is "id below the cursor".
#[derive(Debug, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: usize,
    pub before: Option<String>,
}

pub fn page_request<'a>(
    query: impl Iterator<Item = (String, String)> + 'a,
) -> Result<PageRequest, ApiError> {
    let mut page = PageRequest {
        limit: DEFAULT_PAGE,
        before: None,
    };
    for (name, value) in query {
        match name.as_str() {
            "limit" => {
                page.limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| ApiError::invalid_request("`limit` must be 1 to 200"))?
            }
            "cursor" => {
                let id = parse_uuid(&value).ok_or_else(|| {
                    ApiError::invalid_request("`cursor` is not a cursor from this API")
                })?;
                page.before = Some(id.to_string());
            }
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
                before: None
            }
        );
        assert_eq!(q(&[("limit", "2")]).unwrap().limit, 2);
        let id = "019abc12-4567-7890-abcd-ef1234567891";
        assert_eq!(q(&[("cursor", id)]).unwrap().before.as_deref(), Some(id));
        for bad in [
            ("limit", "0"),
            ("limit", "201"),
            ("limit", "x"),
            ("cursor", "abc"),
            ("page", "2"),
        ] {
            assert_eq!(q(&[bad]).unwrap_err().status(), 400, "{bad:?}");
        }
    }
}
