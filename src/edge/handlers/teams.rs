use worker::Response;

use crate::core::{
    access::{
        check_member_change, last_owner, Actor, Role, KEYS_CANNOT_MANAGE_MEMBERS,
        KEYS_CANNOT_MANAGE_TEAMS,
    },
    error::ApiError,
    ids::new_id,
    routes::Matched,
    teams::{validate_user_id, CreateTeam, SetMemberRole, TeamRecord},
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
    ctx.repo.create_team(&team, &owner).await?;
    ctx.log.team_id = Some(team.id.clone());
    Ok(http::json(201, &team.view()))
}

pub async fn list_teams(ctx: &mut Ctx<'_>) -> Result<Response, ApiError> {
    let user = user_id(ctx).await?;
    let teams = ctx.repo.teams_of(&user).await?;
    let views: Vec<_> = teams.iter().map(TeamRecord::view).collect();
    Ok(http::json(200, &serde_json::json!({ "teams": views })))
}

/// Members are read by any member, and only with a JWT.
pub async fn list_members(ctx: &mut Ctx<'_>) -> Result<Response, ApiError> {
    let actor = authenticate(ctx, TeamScope::Scoped).await?;
    if matches!(actor, Actor::Key { .. }) {
        return Err(ApiError::forbidden(KEYS_CANNOT_MANAGE_MEMBERS));
    }
    let team_id = actor.team_id().unwrap_or_default();
    let members = ctx.repo.members(team_id).await?;
    let views: Vec<_> = members.iter().map(|m| m.view()).collect();
    Ok(http::json(200, &serde_json::json!({ "members": views })))
}

pub async fn set_member(ctx: &mut Ctx<'_>, matched: &Matched<'_>) -> Result<Response, ApiError> {
    let actor = authenticate(ctx, TeamScope::Scoped).await?;
    let actor_role = actor.may_manage(KEYS_CANNOT_MANAGE_MEMBERS)?;
    let team_id = actor.team_id().unwrap_or_default();
    let user_id = matched.param()?;
    validate_user_id(&user_id)?;
    let new_role = ctx.json_body::<SetMemberRole>().await?.role()?;

    let current = ctx.repo.member(team_id, &user_id).await?.map(|m| m.role);
    let owners = owners_if_needed(ctx, team_id, current).await?;
    check_member_change(actor_role, current, Some(new_role), owners)?;
    let member = ctx
        .repo
        .set_member(team_id, &user_id, new_role, ctx.now)
        .await?
        .ok_or_else(last_owner)?;
    Ok(http::json(200, &member.view()))
}

pub async fn remove_member(ctx: &mut Ctx<'_>, matched: &Matched<'_>) -> Result<Response, ApiError> {
    let actor = authenticate(ctx, TeamScope::Scoped).await?;
    let actor_role = actor.may_manage(KEYS_CANNOT_MANAGE_MEMBERS)?;
    let team_id = actor.team_id().unwrap_or_default();
    let user_id = matched.param()?;

    let current = ctx
        .repo
        .member(team_id, &user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("No such member in this team"))?
        .role;
    let owners = owners_if_needed(ctx, team_id, Some(current)).await?;
    check_member_change(actor_role, Some(current), None, owners)?;
    if !ctx.repo.remove_member(team_id, &user_id).await? {
        return Err(last_owner());
    }
    Ok(http::empty(204))
}

/// The owner count matters only when an owner is being changed.
async fn owners_if_needed(
    ctx: &Ctx<'_>,
    team_id: &str,
    current: Option<Role>,
) -> Result<usize, ApiError> {
    match current {
        Some(Role::Owner) => ctx.repo.owner_count(team_id).await,
        _ => Ok(0),
    }
}
