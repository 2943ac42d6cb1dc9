//! Authentication adapter, in two steps:
//! - [`present`] reads what the caller presents, with no I/O: the bearer header parsed, a JWT
//!   verified, an API key's format and checksum checked. The rate limiter keys on it.
//! - [`authenticate`] turns it into an [`Actor`] with D1 lookups (the key's row, the team
//!   membership). Nothing here is cached: a revoked key or a removed member is refused on
//!   the very next request, in every isolate.

use super::app::Ctx;
use crate::core::{
    access::Actor,
    api_keys::LAST_USED_RESOLUTION_MS,
    auth::{
        bearer::{self, Bearer, EXPIRED_TOKEN, INVALID_API_KEY, INVALID_TOKEN},
        jwt::{JwtError, Session},
    },
    config::Config,
    error::ApiError,
    ids::parse_uuid,
    time::UnixMillis,
};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TeamScope {
    /// The endpoint acts on one team: JWT callers must name it in `X-Team-ID`.
    Scoped,
    /// `/api/v1/teams`: no team yet.
    Unscoped,
}

/// What the caller presented, checked as far as is possible without I/O.
pub enum Presented {
    /// The 401 to give: no header, a malformed one, a bad JWT or a malformed key.
    Refused(ApiError),
    Session(Session),
    /// A well-formed key, by its SHA-256; whether it exists is for D1 to say.
    ApiKey {
        hash: String,
    },
}

pub fn present(authorization: Option<&str>, config: &Config, now: UnixMillis) -> Presented {
    match bearer::parse(authorization) {
        Err(e) => Presented::Refused(e),
        Ok(Bearer::ApiKey(key)) => Presented::ApiKey { hash: key.hash() },
        Ok(Bearer::Jwt(token)) => match config.jwt.verify(token, now) {
            Ok(session) => Presented::Session(session),
            Err(JwtError::Expired) => Presented::Refused(ApiError::unauthorized(EXPIRED_TOKEN)),
            Err(JwtError::Invalid) => Presented::Refused(ApiError::unauthorized(INVALID_TOKEN)),
        },
    }
}

impl Presented {
    /// The per-principal limiter's key: the API key (by hash, one-to-one with its id), or
    /// the JWT's user and the team it names. `None` when there is no principal yet.
    /// The team is the canonical UUID, as membership reads it: spellings of one team that
    /// differ in case are one principal, not a fresh budget each.
    pub fn principal_key(&self, team_header: Option<&str>) -> Option<String> {
        match self {
            Presented::Refused(_) => None,
            Presented::ApiKey { hash } => Some(format!("key:{hash}")),
            Presented::Session(s) => Some(format!(
                "user:{}:{}|team:{}",
                s.user_id.len(),
                s.user_id,
                team_header
                    .and_then(|h| parse_uuid(h.trim()))
                    .map_or_else(|| "-".to_string(), |id| id.to_string())
            )),
        }
    }
}

pub async fn authenticate(ctx: &mut Ctx<'_>, scope: TeamScope) -> Result<Actor, ApiError> {
    let presented = ctx
        .presented
        .take()
        .ok_or_else(|| ApiError::internal("authenticate called twice or on an open route"))?;
    let actor = match presented {
        Presented::Refused(e) => return Err(e),
        Presented::ApiKey { hash } => {
            let record = ctx
                .repo
                .api_key_by_hash(&hash)
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
        Presented::Session(session) => {
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
