//! Teams and their members: request validation and response shapes.

use super::{
    access::Role,
    body::{required, Fields, FromBody},
    error::ApiError,
    json::{Obj, ToJson},
    time::rfc3339,
    time::UnixMillis,
};

/// The 409 when a user already belongs to as many teams as `MAX_TEAMS_PER_USER` allows.
pub fn teams_cap_reached(cap: u32) -> ApiError {
    ApiError::conflict(format!(
        "A user can belong to at most {cap} teams (MAX_TEAMS_PER_USER); this user has reached it"
    ))
}

/// The 409 of a refused change that hit a cap: which one, and its config var.
pub fn cap_reached(what: &str, cap: u32, var: &str) -> ApiError {
    ApiError::conflict(format!("A team can have at most {cap} {what} ({var})"))
}

/// A display name: 1 to `max` characters, not blank, no control characters.
pub fn validate_text(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    let len = value.chars().count();
    if len == 0 || len > max || value.trim().is_empty() {
        return Err(ApiError::invalid_request(format!(
            "`{field}` must be 1 to {max} characters and not blank"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::invalid_request(format!(
            "`{field}` must not contain control characters"
        )));
    }
    Ok(())
}

/// A user id is a JWT `sub`: 1 to 255 characters, no control characters.
pub fn validate_user_id(user_id: &str) -> Result<(), ApiError> {
    validate_text("user_id", user_id, 255)
}

/// `POST /api/v1/teams` and `PATCH /api/v1/team`: a team's name.
#[derive(Debug)]
pub struct CreateTeam {
    pub name: String,
}
pub type RenameTeam = CreateTeam;

impl FromBody for CreateTeam {
    const FIELDS: &'static [&'static str] = &["name"];
    fn read(f: &Fields<'_>) -> Result<Self, ApiError> {
        let name = f.string("name")?;
        Ok(CreateTeam {
            name: required("name", name)?,
        })
    }
}

impl CreateTeam {
    pub fn validate(&self) -> Result<(), ApiError> {
        validate_text("name", &self.name, 100)
    }
}

#[derive(Debug)]
pub struct SetMemberRole {
    pub role: String,
}

impl FromBody for SetMemberRole {
    const FIELDS: &'static [&'static str] = &["role"];
    fn read(f: &Fields<'_>) -> Result<Self, ApiError> {
        let role = f.string("role")?;
        Ok(SetMemberRole {
            role: required("role", role)?,
        })
    }
}

impl SetMemberRole {
    pub fn role(&self) -> Result<Role, ApiError> {
        Role::parse(&self.role)
            .ok_or_else(|| ApiError::invalid_request("`role` must be one of owner, admin, member"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamRecord {
    pub id: String,
    pub name: String,
    /// The caller's role in it.
    pub role: Role,
    pub created_at: UnixMillis,
}

/// One team as its member sees it, with the version that is its ETag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamState {
    pub team: TeamRecord,
    pub version: i64,
}

/// Why a rename or a delete of the caller's team changed nothing, from the team as it is
/// now (`None`: deleted, or the caller is no longer a member) and the version `If-Match`
/// pinned. `deleting` asks for an owner; a rename takes an owner or an admin.
pub fn team_change_refusal(
    now: Option<&TeamState>,
    pinned: Option<i64>,
    deleting: bool,
) -> ApiError {
    use super::access::{ONLY_OWNERS_AND_ADMINS, ONLY_OWNERS_DELETE_TEAMS, TEAM_DELETED};
    let Some(now) = now else {
        return ApiError::not_found(TEAM_DELETED);
    };
    if deleting && now.team.role != Role::Owner {
        return ApiError::forbidden(ONLY_OWNERS_DELETE_TEAMS);
    }
    if !now.team.role.manages_team() {
        return ApiError::forbidden(ONLY_OWNERS_AND_ADMINS);
    }
    if pinned.is_some_and(|v| v != now.version) {
        return super::credentials::precondition_failed("team");
    }
    ApiError::conflict("The team changed concurrently; retry")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    pub user_id: String,
    pub role: Role,
    pub added_at: UnixMillis,
}

pub struct TeamView<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub role: &'static str,
    pub created_at: String,
}

impl ToJson for TeamView<'_> {
    fn to_json(&self) -> String {
        Obj::new()
            .str("id", self.id)
            .str("name", self.name)
            .str("role", self.role)
            .str("created_at", &self.created_at)
            .done()
    }
}

impl ToJson for MemberView<'_> {
    fn to_json(&self) -> String {
        Obj::new()
            .str("user_id", self.user_id)
            .str("role", self.role)
            .str("added_at", &self.added_at)
            .done()
    }
}

impl TeamRecord {
    pub fn view(&self) -> TeamView<'_> {
        TeamView {
            id: &self.id,
            name: &self.name,
            role: self.role.as_str(),
            created_at: rfc3339(self.created_at),
        }
    }
}

pub struct MemberView<'a> {
    pub user_id: &'a str,
    pub role: &'static str,
    pub added_at: String,
}

impl MemberRecord {
    pub fn view(&self) -> MemberView<'_> {
        MemberView {
            user_id: &self.user_id,
            role: self.role.as_str(),
            added_at: rfc3339(self.added_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(role: Role, version: i64) -> TeamState {
        TeamState {
            team: TeamRecord {
                id: "t".into(),
                name: "n".into(),
                role,
                created_at: 0,
            },
            version,
        }
    }

    #[test]
    fn a_refused_team_change_names_its_reason() {
        let code = |e: ApiError| (e.status(), e.body());
        assert_eq!(code(team_change_refusal(None, None, false)).0, 404);
        let (status, msg) = code(team_change_refusal(
            Some(&state(Role::Admin, 2)),
            None,
            true,
        ));
        assert_eq!((status, msg.contains("owners")), (403, true));
        assert_eq!(
            code(team_change_refusal(
                Some(&state(Role::Member, 2)),
                None,
                false
            ))
            .0,
            403
        );
        assert_eq!(
            code(team_change_refusal(
                Some(&state(Role::Admin, 3)),
                Some(2),
                false
            ))
            .0,
            412
        );
        // Allowed, in the version pinned, yet nothing changed: a concurrent change.
        assert_eq!(
            code(team_change_refusal(
                Some(&state(Role::Owner, 2)),
                Some(2),
                true
            ))
            .0,
            409
        );
    }

    #[test]
    fn names_are_bounded_and_printable() {
        assert!(validate_text("name", "Render farm", 100).is_ok());
        assert!(validate_text("name", &"é".repeat(100), 100).is_ok());
        for bad in ["", "   ", "a\nb", "\u{7}", &"x".repeat(101)] {
            assert_eq!(
                validate_text("name", bad, 100).unwrap_err().status(),
                400,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn roles_parse_strictly() {
        let role = |r: &str| SetMemberRole { role: r.into() }.role();
        assert_eq!(role("admin").unwrap(), Role::Admin);
        assert!(role("Admin").is_err());
        assert!(role("superuser").is_err());
    }
}
