//! Who may do what: roles, API-key scopes, and the ownership rules for members.

use super::{auth::api_key::KeyKind, error::ApiError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Member,
    Admin,
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "owner" => Some(Role::Owner),
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            _ => None,
        }
    }
    pub fn manages_team(self) -> bool {
        matches!(self, Role::Owner | Role::Admin)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    CloudProvidersRead,
    CloudProvidersWrite,
    /// Call the provider through the proxy (and ask for routing decisions).
    CloudProvidersUse,
}

impl Scope {
    pub const ALL: [Scope; 3] = [
        Scope::CloudProvidersRead,
        Scope::CloudProvidersWrite,
        Scope::CloudProvidersUse,
    ];
    /// A secret key created without `scopes`: read and write; `use` must be asked for.
    pub const SECRET_DEFAULT: [Scope; 2] = [Scope::CloudProvidersRead, Scope::CloudProvidersWrite];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::CloudProvidersRead => "cloud_providers:read",
            Scope::CloudProvidersWrite => "cloud_providers:write",
            Scope::CloudProvidersUse => "cloud_providers:use",
        }
    }
    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s)
    }
}

/// An authenticated caller, already bound to the team the request acts on (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    User {
        user_id: String,
        /// The team from `X-Team-ID` and the caller's role in it; `None` on endpoints that
        /// are not team-scoped.
        team: Option<(String, Role)>,
    },
    Key {
        key_id: String,
        team_id: String,
        kind: KeyKind,
        scopes: Vec<Scope>,
    },
}

/// The contract's one message for API keys and team members managed with an API key.
pub const KEYS_CANNOT_MANAGE: &str = "API keys cannot be managed with an API key";
pub const ONLY_OWNERS_AND_ADMINS: &str = "Only team owners and admins can do this";
pub const KEYS_CANNOT_MANAGE_TEAMS: &str = "Teams cannot be managed with an API key";
pub const ONLY_OWNERS_DELETE_TEAMS: &str = "Only team owners can delete a team";
/// A JWT naming a team that was deleted (`DELETE /api/v1/team`).
pub const TEAM_DELETED: &str = "This team has been deleted";

impl Actor {
    pub fn team_id(&self) -> Option<&str> {
        match self {
            Actor::User { team, .. } => team.as_ref().map(|(id, _)| id.as_str()),
            Actor::Key { team_id, .. } => Some(team_id),
        }
    }

    /// `user` or `secret_key` / `device_key`, for logs and audit.
    pub fn kind(&self) -> &'static str {
        match self {
            Actor::User { .. } => "user",
            Actor::Key {
                kind: KeyKind::Secret,
                ..
            } => "secret_key",
            Actor::Key {
                kind: KeyKind::Device,
                ..
            } => "device_key",
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Actor::User { user_id, .. } => user_id,
            Actor::Key { key_id, .. } => key_id,
        }
    }

    fn role(&self) -> Option<Role> {
        match self {
            Actor::User { team, .. } => team.as_ref().map(|(_, role)| *role),
            Actor::Key { .. } => None,
        }
    }

    /// Reading credentials: any member, any device key, secret keys with the read scope.
    pub fn may_read_credentials(&self) -> Result<(), ApiError> {
        let allowed = match self {
            Actor::User { team, .. } => team.is_some(),
            Actor::Key {
                kind: KeyKind::Device,
                ..
            } => true,
            Actor::Key { scopes, .. } => scopes.contains(&Scope::CloudProvidersRead),
        };
        allowed
            .then_some(())
            .ok_or_else(|| ApiError::forbidden("This API key lacks the cloud_providers:read scope"))
    }

    /// Writing credentials: owners and admins, secret keys with the write scope. Device
    /// keys are always read-only.
    pub fn may_write_credentials(&self) -> Result<(), ApiError> {
        match self {
            Actor::User { .. } if self.role().is_some_and(Role::manages_team) => Ok(()),
            Actor::User { .. } => Err(ApiError::forbidden(
                "Only team owners and admins can change credentials",
            )),
            Actor::Key {
                kind: KeyKind::Device,
                ..
            } => Err(ApiError::forbidden("Device keys are read-only")),
            Actor::Key { scopes, .. } if scopes.contains(&Scope::CloudProvidersWrite) => Ok(()),
            Actor::Key { .. } => Err(ApiError::forbidden(
                "This API key lacks the cloud_providers:write scope",
            )),
        }
    }

    /// Calling the provider through the proxy: any member, secret keys with the use scope.
    /// Device keys never: they belong to local compute, which has no business with the
    /// team's cloud key.
    pub fn may_use_provider(&self) -> Result<(), ApiError> {
        match self {
            Actor::User { team, .. } if team.is_some() => Ok(()),
            Actor::User { .. } => Err(ApiError::forbidden("You are not a member of this team")),
            Actor::Key {
                kind: KeyKind::Device,
                ..
            } => Err(ApiError::forbidden(
                "Device keys cannot call the provider through the proxy",
            )),
            Actor::Key { scopes, .. } if scopes.contains(&Scope::CloudProvidersUse) => Ok(()),
            Actor::Key { .. } => Err(ApiError::forbidden(
                "This API key lacks the cloud_providers:use scope",
            )),
        }
    }

    /// Listing the team's agents: any member, secret keys with the read or use scope.
    pub fn may_list_agents(&self) -> Result<(), ApiError> {
        match self {
            Actor::User { team, .. } if team.is_some() => Ok(()),
            Actor::Key {
                kind: KeyKind::Secret,
                scopes,
                ..
            } if scopes.contains(&Scope::CloudProvidersRead)
                || scopes.contains(&Scope::CloudProvidersUse) =>
            {
                Ok(())
            }
            _ => Err(ApiError::forbidden(
                "Agents are listed for members and for secret keys with cloud_providers:read or cloud_providers:use",
            )),
        }
    }

    /// Asking where a task runs: any member, secret keys with the use scope.
    pub fn may_route_tasks(&self) -> Result<(), ApiError> {
        match self {
            Actor::User { team, .. } if team.is_some() => Ok(()),
            Actor::Key {
                kind: KeyKind::Secret,
                scopes,
                ..
            } if scopes.contains(&Scope::CloudProvidersUse) => Ok(()),
            _ => Err(ApiError::forbidden(
                "Tasks are routed for members and for secret keys with cloud_providers:use",
            )),
        }
    }

    /// Managing API keys, members or the audit trail: owners and admins, with a JWT only.
    pub fn may_manage(&self, key_message: &'static str) -> Result<Role, ApiError> {
        match self {
            Actor::Key { .. } => Err(ApiError::forbidden(key_message)),
            _ => self
                .role()
                .filter(|r| r.manages_team())
                .ok_or_else(|| ApiError::forbidden(ONLY_OWNERS_AND_ADMINS)),
        }
    }
}

/// The ownership rules for changing a member's role (`new_role`) or removing them (`None`).
/// `owners` is the team's current owner count. D1 applies the same rules inside the member
/// statements (`edge/repo.rs`); this names the reason when it refuses.
pub fn check_member_change(
    actor_role: Role,
    current: Option<Role>,
    new_role: Option<Role>,
    owners: usize,
) -> Result<(), ApiError> {
    let touches_owner = current == Some(Role::Owner) || new_role == Some(Role::Owner);
    if touches_owner && actor_role != Role::Owner {
        return Err(ApiError::forbidden(
            "Only an owner can grant or change the owner role",
        ));
    }
    if current == Some(Role::Owner) && new_role != Some(Role::Owner) && owners <= 1 {
        return Err(last_owner());
    }
    Ok(())
}

pub fn last_owner() -> ApiError {
    ApiError::conflict("The last owner of a team cannot be removed or demoted")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(role: Option<Role>) -> Actor {
        Actor::User {
            user_id: "u".into(),
            team: role.map(|r| ("t".into(), r)),
        }
    }
    fn key(kind: KeyKind, scopes: &[Scope]) -> Actor {
        Actor::Key {
            key_id: "k".into(),
            team_id: "t".into(),
            kind,
            scopes: scopes.to_vec(),
        }
    }

    #[test]
    fn credential_reads_and_writes_follow_the_contract() {
        use Scope::*;
        let cases = [
            (user(Some(Role::Member)), true, false),
            (user(Some(Role::Admin)), true, true),
            (user(Some(Role::Owner)), true, true),
            (key(KeyKind::Device, &[]), true, false),
            (key(KeyKind::Device, &[CloudProvidersWrite]), true, false),
            (key(KeyKind::Secret, &[CloudProvidersRead]), true, false),
            (key(KeyKind::Secret, &[CloudProvidersWrite]), false, true),
            (key(KeyKind::Secret, &Scope::ALL), true, true),
        ];
        for (actor, read, write) in cases {
            assert_eq!(actor.may_read_credentials().is_ok(), read, "{actor:?}");
            assert_eq!(actor.may_write_credentials().is_ok(), write, "{actor:?}");
        }
    }

    #[test]
    fn agents_are_listed_and_tasks_routed_for_the_right_callers() {
        use Scope::*;
        let cases = [
            (user(Some(Role::Member)), true, true),
            (user(None), false, false),
            (key(KeyKind::Device, &[CloudProvidersRead]), false, false),
            (key(KeyKind::Secret, &[CloudProvidersRead]), true, false),
            (key(KeyKind::Secret, &[CloudProvidersWrite]), false, false),
            (key(KeyKind::Secret, &[CloudProvidersUse]), true, true),
        ];
        for (actor, list, route) in cases {
            assert_eq!(actor.may_list_agents().is_ok(), list, "{actor:?}");
            assert_eq!(actor.may_route_tasks().is_ok(), route, "{actor:?}");
        }
    }

    #[test]
    fn the_proxy_is_for_members_and_keys_with_the_use_scope_never_devices() {
        use Scope::*;
        let cases = [
            (user(Some(Role::Member)), true),
            (user(Some(Role::Owner)), true),
            (user(None), false),
            (key(KeyKind::Device, &[]), false),
            (key(KeyKind::Device, &[CloudProvidersUse]), false),
            (key(KeyKind::Secret, &Scope::SECRET_DEFAULT), false),
            (key(KeyKind::Secret, &[CloudProvidersUse]), true),
        ];
        for (actor, allowed) in cases {
            assert_eq!(actor.may_use_provider().is_ok(), allowed, "{actor:?}");
        }
        assert_eq!(
            key(KeyKind::Secret, &[CloudProvidersRead])
                .may_use_provider()
                .unwrap_err()
                .message,
            "This API key lacks the cloud_providers:use scope"
        );
    }

    #[test]
    fn management_needs_a_jwt_owner_or_admin() {
        assert!(user(Some(Role::Owner))
            .may_manage(KEYS_CANNOT_MANAGE)
            .is_ok());
        assert!(user(Some(Role::Admin))
            .may_manage(KEYS_CANNOT_MANAGE)
            .is_ok());
        assert_eq!(
            user(Some(Role::Member))
                .may_manage(KEYS_CANNOT_MANAGE)
                .unwrap_err()
                .status(),
            403
        );
        let e = key(KeyKind::Secret, &Scope::ALL)
            .may_manage(KEYS_CANNOT_MANAGE)
            .unwrap_err();
        assert_eq!((e.status(), e.message.as_ref()), (403, KEYS_CANNOT_MANAGE));
    }

    #[test]
    fn only_owners_touch_owners_and_the_last_owner_stays() {
        use Role::*;
        assert!(check_member_change(Admin, None, Some(Member), 1).is_ok());
        assert!(check_member_change(Admin, Some(Member), Some(Admin), 1).is_ok());
        assert_eq!(
            check_member_change(Admin, None, Some(Owner), 1)
                .unwrap_err()
                .status(),
            403
        );
        assert_eq!(
            check_member_change(Admin, Some(Owner), Some(Admin), 2)
                .unwrap_err()
                .status(),
            403
        );
        assert_eq!(
            check_member_change(Admin, Some(Owner), None, 2)
                .unwrap_err()
                .status(),
            403
        );
        assert!(check_member_change(Owner, None, Some(Owner), 1).is_ok());
        assert!(check_member_change(Owner, Some(Owner), Some(Admin), 2).is_ok());
        assert_eq!(
            check_member_change(Owner, Some(Owner), Some(Admin), 1)
                .unwrap_err()
                .status(),
            409
        );
        assert_eq!(
            check_member_change(Owner, Some(Owner), None, 1)
                .unwrap_err()
                .status(),
            409
        );
        assert!(check_member_change(Owner, Some(Owner), Some(Owner), 1).is_ok());
    }
}
