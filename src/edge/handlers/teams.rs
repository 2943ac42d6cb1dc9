use worker::Response;

use crate::core::{
    access::{
        check_member_change, Actor, Role, KEYS_CANNOT_MANAGE, KEYS_CANNOT_MANAGE_TEAMS,
        ONLY_OWNERS_AND_ADMINS, TEAM_DELETED,
    },
    credentials::{if_match_version, version_etag},
    error::ApiError,
    ids::new_id,
    json::ToJson,
    pages::{encode_member_cursor, member_cursor, page_of, uuid_cursor},
    routes::Matched,
    teams::{
        cap_reached, team_change_refusal, teams_cap_reached, validate_user_id, CreateTeam,
        RenameTeam, SetMemberRole, TeamRecord, TeamState,
    },
};
use crate::edge::{
    app::Ctx,
    auth::{authenticate, TeamScope},
    http,
};

async fn user_id(ctx: &mut Ctx<'_>) -> Result<String, ApiError> {
    match authenticate(ctx, TeamScope::Unscoped).await? {
        Actor::User { user_id, .. } => Ok(user_id),
        Actor::Key { .. } => Err(ApiError::forbidden(KEYS_CANNOT_MANAGE_TEAMS)),
    }
}

pub async fn create_team(ctx: &mut Ctx<'_>) -> Result<Response, ApiError> {
    let owner = user_id(ctx).await?;
    let body: CreateTeam = ctx.json_body().await?;
    body.validate()?;
    let team = TeamRecord {
        id: new_id(ctx.now).to_string(),
        name: body.name,
        role: Role::Owner,
        created_at: ctx.now,
    };
    let creator = Actor::User {
        user_id: owner.clone(),
        team: Some((team.id.clone(), Role::Owner)),
    };
    let event = super::audit_event(ctx, &creator, "team.created", None, Some(&team.id));
    if !ctx
        .repo
        .create_team(&team, &owner, ctx.config.max_teams_per_user, &event)
        .await?
    {
        return Err(teams_cap_reached(ctx.config.max_teams_per_user));
    }
    ctx.log.team_id = Some(team.id.clone());
    Ok(http::json(201, team.view().to_json()))
}

pub async fn list_teams(ctx: &mut Ctx<'_>) -> Result<Response, ApiError> {
    let user = user_id(ctx).await?;
    let page = super::page(ctx)?;
    let after = uuid_cursor(&page)?;
    let teams = ctx
        .repo
        .teams_of(&user, after.as_deref(), page.limit + 1)
        .await?;
    let (teams, next_cursor) = page_of(teams, page.limit, |t| t.id.clone());
    let views: Vec<_> = teams.iter().map(TeamRecord::view).collect();
    Ok(http::page("teams", &views, next_cursor.as_deref()))
}

/// The caller, for the team's own endpoints: a JWT user of the team (`X-Team-ID`) only.
async fn team_member(ctx: &mut Ctx<'_>) -> Result<Actor, ApiError> {
    match authenticate(ctx, TeamScope::Scoped).await? {
        actor @ Actor::User { team: Some(_), .. } => Ok(actor),
        _ => Err(ApiError::forbidden(KEYS_CANNOT_MANAGE_TEAMS)),
    }
}

fn team_response(status: u16, state: &TeamState) -> Response {
    let response = http::json(status, state.team.view().to_json());
    let _ = response.headers().set("ETag", &version_etag(state.version));
    response
}

/// `If-Match`, evaluated against the team as the caller sees it now: the version a write
/// must still find (`None` without the header, or for `*`, which the caller's own team
/// always matches while it exists).
async fn pinned_version(
    ctx: &Ctx<'_>,
    team_id: &str,
    user_id: &str,
) -> Result<Option<i64>, ApiError> {
    let Some(header) = ctx.header("If-Match") else {
        return Ok(None);
    };
    let current = ctx.repo.team(team_id, user_id).await?;
    if_match_version(Some(&header), current.map(|t| t.version), "team")
}

pub async fn get_team(ctx: &mut Ctx<'_>) -> Result<Response, ApiError> {
    let actor = team_member(ctx).await?;
    let (user_id, team_id) = (actor.id(), actor.team_id().unwrap_or_default());
    let state = ctx
        .repo
        .team(team_id, user_id)
        .await?
        .ok_or_else(|| ApiError::not_found(TEAM_DELETED))?;
    Ok(team_response(200, &state))
}

/// Renames the team (owners and admins), with `team.renamed` in the same batch.
pub async fn rename_team(ctx: &mut Ctx<'_>) -> Result<Response, ApiError> {
    let actor = team_member(ctx).await?;
    let (user_id, team_id) = (actor.id(), actor.team_id().unwrap_or_default());
    let body: RenameTeam = ctx.json_body().await?;
    body.validate()?;
    let expected = pinned_version(ctx, team_id, user_id).await?;
    let event = super::audit_event(ctx, &actor, "team.renamed", None, Some(team_id));
    match ctx
        .repo
        .rename_team(team_id, user_id, &body.name, expected, &event)
        .await?
    {
        Some(state) => Ok(team_response(200, &state)),
        None => {
            let now = ctx.repo.team(team_id, user_id).await?;
            Err(team_change_refusal(now.as_ref(), expected, false))
        }
    }
}

/// Deletes the team (owners only): every key revoked, every ciphertext destroyed, the
/// members removed, `team.deleted` kept in the audit trail; all in one batch.
pub async fn delete_team(ctx: &mut Ctx<'_>) -> Result<Response, ApiError> {
    let actor = team_member(ctx).await?;
    let (user_id, team_id) = (actor.id(), actor.team_id().unwrap_or_default());
    let expected = pinned_version(ctx, team_id, user_id).await?;
    let event = super::audit_event(ctx, &actor, "team.deleted", None, Some(team_id));
    if ctx
        .repo
        .delete_team(team_id, user_id, expected, ctx.now, &event)
        .await?
    {
        Ok(http::empty(204))
    } else {
        let now = ctx.repo.team(team_id, user_id).await?;
        Err(team_change_refusal(now.as_ref(), expected, true))
    }
}

/// Members are read by any member, and only with a JWT.
pub async fn list_members(ctx: &mut Ctx<'_>) -> Result<Response, ApiError> {
    let actor = authenticate(ctx, TeamScope::Scoped).await?;
    if matches!(actor, Actor::Key { .. }) {
        return Err(ApiError::forbidden(KEYS_CANNOT_MANAGE));
    }
    let team_id = actor.team_id().unwrap_or_default();
    let page = super::page(ctx)?;
    let after = member_cursor(&page)?;
    let members = ctx
        .repo
        .members(
            team_id,
            after.as_ref().map(|(at, user)| (*at, user.as_str())),
            page.limit + 1,
        )
        .await?;
    let (members, next_cursor) = page_of(members, page.limit, |m| {
        encode_member_cursor(m.added_at, &m.user_id)
    });
    let views: Vec<_> = members.iter().map(|m| m.view()).collect();
    Ok(http::page("members", &views, next_cursor.as_deref()))
}

/// Adds a member or changes their role. D1 decides in the one statement, with the caller's
/// role and the target's as they are at write time, so a role changed by a concurrent
/// request can never be acted on. Only a refusal costs further reads, to name its reason.
pub async fn set_member(ctx: &mut Ctx<'_>, matched: &Matched<'_>) -> Result<Response, ApiError> {
    let actor = authenticate(ctx, TeamScope::Scoped).await?;
    actor.may_manage(KEYS_CANNOT_MANAGE)?;
    let team_id = actor.team_id().unwrap_or_default();
    let user_id = matched.param()?;
    validate_user_id(&user_id)?;
    let new_role = ctx.json_body::<SetMemberRole>().await?.role()?;
    // The action (member.added or member.role_changed) is decided in the write's batch.
    let event = super::audit_event(ctx, &actor, "member", None, Some(&user_id));

    match ctx
        .repo
        .set_member(
            team_id,
            &user_id,
            new_role,
            actor.id(),
            ctx.now,
            &ctx.config.caps,
            &event,
        )
        .await?
    {
        Some(member) => Ok(http::json(200, member.view().to_json())),
        None => Err(refusal(ctx, team_id, actor.id(), &user_id, Some(new_role)).await),
    }
}

pub async fn remove_member(ctx: &mut Ctx<'_>, matched: &Matched<'_>) -> Result<Response, ApiError> {
    let actor = authenticate(ctx, TeamScope::Scoped).await?;
    actor.may_manage(KEYS_CANNOT_MANAGE)?;
    let team_id = actor.team_id().unwrap_or_default();
    let user_id = matched.param()?;

    let event = super::audit_event(ctx, &actor, "member.removed", None, Some(&user_id));
    if ctx
        .repo
        .remove_member(team_id, &user_id, actor.id(), &event)
        .await?
    {
        Ok(http::empty(204))
    } else {
        Err(refusal(ctx, team_id, actor.id(), &user_id, None).await)
    }
}

/// Why D1 refused a member change, read after the fact: the caller's role, the target's
/// and the owner count as they are now.
async fn refusal(
    ctx: &Ctx<'_>,
    team_id: &str,
    actor_id: &str,
    user_id: &str,
    new_role: Option<Role>,
) -> ApiError {
    let explain = async {
        let actor_role = ctx.repo.member(team_id, actor_id).await?.map(|m| m.role);
        let Some(actor_role) = actor_role.filter(|r| r.manages_team()) else {
            return Ok(ApiError::forbidden(ONLY_OWNERS_AND_ADMINS));
        };
        let current = ctx.repo.member(team_id, user_id).await?.map(|m| m.role);
        if current.is_none() && new_role.is_none() {
            return Ok(ApiError::not_found("No such member in this team"));
        }
        let caps = ctx.config.caps;
        if current.is_none() && ctx.repo.team_count(user_id).await? >= caps.teams_per_user {
            return Ok(teams_cap_reached(caps.teams_per_user));
        }
        if current.is_none()
            && ctx.repo.team_size(team_id, ctx.now).await?.0 >= caps.members_per_team
        {
            return Ok(cap_reached(
                "members",
                caps.members_per_team,
                "MAX_MEMBERS_PER_TEAM",
            ));
        }
        let owners = match current {
            Some(Role::Owner) => ctx.repo.owner_count(team_id).await?,
            _ => 0,
        };
        Ok(check_member_change(actor_role, current, new_role, owners)
            .err()
            .unwrap_or_else(|| {
                ApiError::conflict("The team's members changed concurrently; retry")
            }))
    };
    explain.await.unwrap_or_else(|e: ApiError| e)
}
