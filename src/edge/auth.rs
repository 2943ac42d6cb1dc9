//! Authentication adapter, in two steps:
//! - [`present`] reads what the caller presents, with no D1 or Durable Object call: the
//!   bearer header parsed, a JWT verified (an ES256, EdDSA or RS256 signature by the
//!   runtime's WebCrypto), an API key's format and checksum checked. The rate limiter keys
//!   on it.
//! - [`authenticate`] turns it into an [`Actor`] with D1 lookups (the key's row, the team
//!   membership). Only a JWT's verification is cached (per isolate, for at most a minute);
//!   rows are never: a revoked key or a removed member is refused on the very next
//!   request, in every isolate.

use std::cell::RefCell;

use super::{
    app::Ctx,
    repo::{CallerReads, Repo, SealedCredential},
};
use crate::core::{
    access::{Actor, Role, TEAM_DELETED},
    api_keys::{ApiKeyRecord, LAST_USED_RESOLUTION_MS},
    auth::{
        bearer::{self, Bearer, EXPIRED_TOKEN, INVALID_API_KEY, INVALID_TOKEN},
        jwt::{JwtError, Session, Step},
        session_cache::SessionCache,
        writer_cache::WriterCache,
    },
    config::Config,
    credentials::CredentialRecord,
    error::ApiError,
    ids::parse_uuid,
    presence::DeviceKey,
    providers::Provider,
    teams::MemberRecord,
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

thread_local! {
    /// Tokens this isolate verified lately (`core/auth/session_cache.rs`).
    static SESSIONS: RefCell<SessionCache> = RefCell::new(SessionCache::default());
    /// Callers this isolate authenticated from D1 lately (`core/auth/writer_cache.rs`).
    static WRITERS: RefCell<WriterCache> = RefCell::new(WriterCache::default());
}

pub async fn present(authorization: Option<&str>, config: &Config, now: UnixMillis) -> Presented {
    match bearer::parse(authorization) {
        Err(e) => Presented::Refused(e),
        Ok(Bearer::ApiKey(key)) => Presented::ApiKey { hash: key.hash() },
        Ok(Bearer::Jwt(token)) => match session(config, token, now).await {
            Ok(session) => Presented::Session(session),
            Err(JwtError::Expired) => Presented::Refused(ApiError::unauthorized(EXPIRED_TOKEN)),
            Err(JwtError::Invalid) => Presented::Refused(ApiError::unauthorized(INVALID_TOKEN)),
        },
    }
}

/// A JWT's session: from this isolate's cache, or verified now (an ES256, EdDSA or RS256
/// signature by WebCrypto) and remembered.
async fn session(config: &Config, token: &str, now: UnixMillis) -> Result<Session, JwtError> {
    if let Some(session) = SESSIONS.with(|cache| cache.borrow_mut().get(token, now)) {
        return Ok(session);
    }
    let (session, exp) = match config.jwt.begin(token, now) {
        Step::Done(result) => result?,
        Step::Signature(pending) => {
            let valid =
                super::webcrypto::verify(pending.key, pending.message, pending.signature()).await;
            pending.finish(valid, now)?
        }
    };
    SESSIONS.with(|cache| {
        cache
            .borrow_mut()
            .remember(token, session.clone(), exp, now)
    });
    Ok(session)
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
    let actor = match take_presented(ctx)? {
        Presented::Refused(e) => return Err(e),
        Presented::ApiKey { hash } => {
            let record = ctx.repo.api_key_by_hash(&hash).await?;
            key_actor(ctx, record).await?
        }
        Presented::Session(session) => {
            let team = match scope {
                TeamScope::Unscoped => None,
                TeamScope::Scoped => {
                    let team_id = named_team(ctx)?;
                    let member = ctx.repo.member(&team_id, &session.user_id).await?;
                    Some(membership(ctx, team_id, member).await?)
                }
            };
            remembered(
                ctx,
                Actor::User {
                    user_id: session.user_id,
                    team,
                },
                None,
            )
        }
    };
    Ok(logged(ctx, actor))
}

/// The caller as this isolate remembers it from an earlier request, when `may` lets it go
/// ahead: no D1 read. The write that follows must re-check the caller in its own
/// statements ([`super::repo::WriteGuard`]) and call [`forget_writer`] when that refuses it.
/// `None`: authenticate as usual.
pub fn known_writer(ctx: &mut Ctx<'_>, may: impl Fn(&Actor) -> bool) -> Option<Actor> {
    let principal = ctx.principal_key.as_deref()?;
    let known = WRITERS.with(|w| w.borrow_mut().writer(principal, ctx.now, may))?;
    take_presented(ctx).ok()?;
    if let (true, Actor::Key { key_id, .. }) = (known.touch, &known.actor) {
        touch_after_response(ctx, key_id.clone());
    }
    Some(logged(ctx, known.actor))
}

/// After a write refused its writer: the next request reads D1 again.
pub fn forget_writer(ctx: &Ctx<'_>) {
    if let Some(principal) = ctx.principal_key.as_deref() {
        WRITERS.with(|w| w.borrow_mut().forget(principal));
    }
}

/// Remembers a caller D1 has just vouched for (`key`: an API key's expiry and last use).
fn remembered(
    ctx: &Ctx<'_>,
    actor: Actor,
    key: Option<(Option<UnixMillis>, Option<UnixMillis>)>,
) -> Actor {
    if let Some(principal) = ctx.principal_key.clone() {
        WRITERS.with(|w| {
            w.borrow_mut()
                .remember(principal, actor.clone(), key, ctx.now)
        });
    }
    actor
}

/// [`authenticate`] for a team-scoped credential endpoint, reading the team's credential
/// for `provider` in the same D1 round trip as the key's row or the membership. The row is
/// always the caller's own team's, and is returned only once the caller is authenticated.
pub async fn authenticate_with_credential(
    ctx: &mut Ctx<'_>,
    provider: &Provider,
) -> Result<(Actor, Option<CredentialRecord>), ApiError> {
    let (actor, credential, _) = authenticate_with_reads(ctx, provider, false, false).await?;
    Ok((actor, credential.map(|c| c.record)))
}

/// As [`authenticate_with_credential`], with the ciphertext: for the verify and proxy
/// paths, the only ones that decrypt.
pub async fn authenticate_with_sealed_credential(
    ctx: &mut Ctx<'_>,
    provider: &Provider,
) -> Result<(Actor, Option<SealedCredential>), ApiError> {
    let (actor, credential, _) = authenticate_with_reads(ctx, provider, true, false).await?;
    Ok((actor, credential))
}

/// As [`authenticate_with_credential`], with the team's usable device keys read in the same
/// round trip: the route decision.
pub async fn authenticate_with_devices(
    ctx: &mut Ctx<'_>,
    provider: &Provider,
) -> Result<(Actor, Option<CredentialRecord>, Vec<DeviceKey>), ApiError> {
    let (actor, credential, devices) = authenticate_with_reads(ctx, provider, false, true).await?;
    Ok((
        actor,
        credential.map(|c| c.record),
        devices.unwrap_or_default(),
    ))
}

/// The team of the caller, if this isolate authenticated this principal from D1 in the
/// last minute (`WriterCache::team_of`): for a read that runs beside the authentication.
/// Its answer may be used only if the authentication then finds the caller in that team.
pub fn remembered_team(ctx: &Ctx<'_>) -> Option<String> {
    let principal = ctx.principal_key.as_deref()?;
    WRITERS.with(|w| w.borrow_mut().team_of(principal, ctx.now))
}

async fn authenticate_with_reads(
    ctx: &mut Ctx<'_>,
    provider: &Provider,
    sealed: bool,
    devices: bool,
) -> Result<(Actor, Option<SealedCredential>, Option<Vec<DeviceKey>>), ApiError> {
    let devices = devices.then_some(ctx.now);
    let (actor, credential, devices) = match take_presented(ctx)? {
        Presented::Refused(e) => return Err(e),
        Presented::ApiKey { hash } => {
            let CallerReads {
                caller,
                credential,
                devices,
            } = ctx
                .repo
                .api_key_and_credential(&hash, provider, sealed, devices)
                .await?;
            (key_actor(ctx, caller).await?, credential, devices)
        }
        Presented::Session(session) => {
            let team_id = named_team(ctx)?;
            let CallerReads {
                caller,
                credential,
                devices,
            } = ctx
                .repo
                .member_and_credential(&team_id, &session.user_id, provider, sealed, devices)
                .await?;
            let actor = Actor::User {
                user_id: session.user_id,
                team: Some(membership(ctx, team_id, caller).await?),
            };
            (remembered(ctx, actor, None), credential, devices)
        }
    };
    Ok((logged(ctx, actor), credential, devices))
}

fn take_presented(ctx: &mut Ctx<'_>) -> Result<Presented, ApiError> {
    let presented = ctx
        .presented
        .take()
        .ok_or_else(|| ApiError::internal("authenticate called twice or on an open route"))?;
    // A verified JWT names its user even when the team check then refuses it: the log line
    // says who tried.
    if let Presented::Session(session) = &presented {
        ctx.log.principal_kind = Some("user");
        ctx.log.principal_id = Some(session.user_id.clone());
    }
    Ok(presented)
}

/// The actor of an API key's row, if the key is usable now. The team is the key's own;
/// X-Team-ID is ignored, whatever it says.
async fn key_actor(ctx: &mut Ctx<'_>, record: Option<ApiKeyRecord>) -> Result<Actor, ApiError> {
    // A revoked or expired key's row names it: its log line says which key was tried.
    if let Some(r) = record.as_ref().filter(|r| !r.is_usable(ctx.now)) {
        ctx.log.principal_kind = Some(r.actor().kind());
        ctx.log.principal_id = Some(r.id.clone());
        ctx.log.team_id = Some(r.team_id.clone());
    }
    let record = record
        .filter(|r| r.is_usable(ctx.now))
        .ok_or_else(|| ApiError::unauthorized(INVALID_API_KEY))?;
    let mut last_used_at = record.last_used_at;
    if record.needs_last_used_update(ctx.now) {
        touch_after_response(ctx, record.id.clone());
        last_used_at = Some(ctx.now);
    }
    Ok(remembered(
        ctx,
        record.actor(),
        Some((record.expires_at, last_used_at)),
    ))
}

/// Records the key's use after the response: a failed write costs the caller nothing, and
/// is logged.
fn touch_after_response(ctx: &Ctx<'_>, key_id: String) {
    let (env, now) = (ctx.env.clone(), ctx.now);
    ctx.context.wait_until(async move {
        let touched = match Repo::new(&env) {
            Ok(repo) => {
                repo.touch_api_key(&key_id, now, LAST_USED_RESOLUTION_MS)
                    .await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = touched {
            worker::console_error!(
                "{}",
                crate::core::json::Obj::new()
                    .str("job", "touch_api_key")
                    .str("key_id", &key_id)
                    .opt_str("error", e.internal_detail.as_deref())
                    .done()
            );
        }
    });
}

/// The team a JWT caller names in X-Team-ID.
fn named_team(ctx: &mut Ctx<'_>) -> Result<String, ApiError> {
    let team_id = team_header(ctx.header("X-Team-ID"))?;
    ctx.log.team_id = Some(team_id.clone());
    Ok(team_id)
}

/// The caller's role in the team named, or the refusal: 404 for a deleted team (its former
/// members' tokens find nothing there), 403 for any other team the caller is not in. The
/// extra read is on the refusal path only.
pub async fn membership(
    ctx: &Ctx<'_>,
    team_id: String,
    member: Option<MemberRecord>,
) -> Result<(String, Role), ApiError> {
    match member {
        Some(member) => Ok((team_id, member.role)),
        None if ctx.repo.team_deleted(&team_id).await? => Err(ApiError::not_found(TEAM_DELETED)),
        None => Err(ApiError::forbidden("You are not a member of this team")),
    }
}

fn logged(ctx: &mut Ctx<'_>, actor: Actor) -> Actor {
    ctx.authenticated = true;
    ctx.log.principal_kind = Some(actor.kind());
    ctx.log.principal_id = Some(actor.id().to_string());
    ctx.log.team_id = actor.team_id().map(str::to_string);
    actor
}

fn team_header(value: Option<String>) -> Result<String, ApiError> {
    let value = value.ok_or_else(|| ApiError::invalid_request("X-Team-ID header is required"))?;
    parse_uuid(value.trim())
        .map(|id| id.to_string())
        .ok_or_else(|| ApiError::invalid_request("X-Team-ID must be a UUID"))
}
