//! Authentication adapter: the bearer token to an [`Actor`], with D1 lookups for API keys
//! and team membership. Nothing here is cached: a revoked key or a removed member is
//! refused on the very next request, in every isolate.

use super::app::Ctx;
use crate::core::{
    access::Actor,
    api_keys::LAST_USED_RESOLUTION_MS,
    auth::{
        bearer::{self, Bearer, EXPIRED_TOKEN, INVALID_API_KEY, INVALID_TOKEN},
        jwt::JwtError,
    },
    error::ApiError,
    ids::parse_uuid,
};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TeamScope {
    /// The endpoint acts on one team: JWT callers must name it in `X-Team-ID`.
    Scoped,
    /// `/api/v1/teams`: no team yet.
    Unscoped,
}

pub async fn authenticate(ctx: &mut Ctx<'_>, scope: TeamScope) -> Result<Actor, ApiError> {
    let header = ctx.header("Authorization");
    let actor = match bearer::parse(header.as_deref())? {
        Bearer::ApiKey(key) => {
            let record = ctx
                .repo
                .api_key_by_hash(&key.hash())
                .await?
                .filter(|r| r.is_usable(ctx.now))
                .ok_or_else(|| ApiError::unauthorized(INVALID_API_KEY))?;
            if record.needs_last_used_update(ctx.now) {
                ctx.repo
                    .touch_api_key(&record.id, ctx.now, LAST_USED_RESOLUTION_MS)
                    .await?;
            }
            // The team is the key's own; X-Team-ID is ignored, whatever it says.
            record.actor()
        }
        Bearer::Jwt(token) => {
            let session = ctx.config.jwt.verify(token, ctx.now).map_err(|e| {
                ApiError::unauthorized(match e {
                    JwtError::Expired => EXPIRED_TOKEN,
                    JwtError::Invalid => INVALID_TOKEN,
                })
            })?;
            let team = match scope {
                TeamScope::Unscoped => None,
                TeamScope::Scoped => {
                    let team_id = team_header(ctx.header("X-Team-ID"))?;
                    ctx.log.team_id = Some(team_id.clone());
                    let member = ctx.repo.member(&team_id, &session.user_id).await?;
                    let role = member
                        .ok_or_else(|| ApiError::forbidden("You are not a member of this team"))?
                        .role;
                    Some((team_id, role))
                }
            };
            Actor::User {
                user_id: session.user_id,
                team,
            }
        }
    };
    ctx.log.principal_kind = Some(actor.kind());
    ctx.log.principal_id = Some(actor.id().to_string());
    ctx.log.team_id = actor.team_id().map(str::to_string);
    Ok(actor)
}

fn team_header(value: Option<String>) -> Result<String, ApiError> {
    let value = value.ok_or_else(|| ApiError::invalid_request("X-Team-ID header is required"))?;
    parse_uuid(value.trim())
        .map(|id| id.to_string())
        .ok_or_else(|| ApiError::invalid_request("X-Team-ID must be a UUID"))
}
