use worker::Response;

use crate::core::{
    access::Actor,
    audit::AuditEvent,
    auth::bearer::INVALID_API_KEY,
    credentials::{
        check_if_match, header_safe, if_match_is_any, preview, provider_for, CredentialRecord,
        PatchCredential, Precondition, PutCredential, Status, FALLBACK_NEEDS_ACTIVE_KEY,
    },
    crypto::{credential_aad, KeyRing},
    error::{ApiError, ErrorKind},
    ids::new_id,
    json::ToJson,
    providers::Provider,
    routes::Matched,
    verify::{rejected_on_save, State, Verification},
};
use crate::edge::{
    app::{self, Ctx},
    auth::{
        authenticate, authenticate_with_credential, authenticate_with_sealed_credential,
        forget_writer, known_writer, membership, TeamScope,
    },
    http, provider as upstream,
    repo::{PutEvents, SealedCredential, WriteGuard},
};

/// How often a PATCH or DELETE re-reads and retries when a concurrent write moved the row
/// between its read and its write (only without `If-Match`, which turns that into 412).
const ATTEMPTS: usize = 3;

fn respond(record: &CredentialRecord) -> Response {
    let response = http::json(200, record.view().to_json());
    let _ = response.headers().set("ETag", &record.etag());
    response
}

fn key_ring<'c>(ctx: &'c Ctx<'_>) -> Result<&'c KeyRing, ApiError> {
    ctx.config.key_ring.as_ref().ok_or_else(|| {
        ApiError::unavailable(
            "Credential storage is not configured",
            "CREDENTIAL_KEYS is not set",
        )
    })
}

pub fn audit(ctx: &Ctx<'_>, actor: &Actor, action: &str, provider: &Provider) -> AuditEvent {
    super::audit_event(ctx, actor, action, Some(provider), None)
}

fn stale() -> ApiError {
    ApiError::new(
        ErrorKind::PreconditionFailed,
        "The credential has changed since you read it (If-Match)",
    )
}

/// A guarded write changed nothing: either the writer lost the right to write since it
/// authenticated (its key revoked or expired, its role gone), or the row moved on. A
/// refused writer is forgotten by this isolate's memory of writers.
async fn refused_writer(ctx: &Ctx<'_>, actor: &Actor) -> Result<Option<ApiError>, ApiError> {
    if ctx
        .repo
        .guard_holds(&WriteGuard::for_actor(actor, ctx.now))
        .await?
    {
        return Ok(None);
    }
    forget_writer(ctx);
    Ok(Some(match actor {
        Actor::Key { .. } => ApiError::unauthorized(INVALID_API_KEY),
        Actor::User { user_id, team } => {
            // As reading the caller first would have said: gone from the team (or the team
            // deleted), or still in it without the role.
            let team_id = team.as_ref().map_or("", |(id, _)| id.as_str());
            let member = ctx.repo.member(team_id, user_id).await?;
            match membership(ctx, team_id.to_string(), member).await {
                Err(refusal) => refusal,
                Ok(_) => ApiError::forbidden("Only team owners and admins can change credentials"),
            }
        }
    }))
}

fn none_configured() -> ApiError {
    ApiError::not_found("No credential is configured for this provider")
}

async fn existing(
    ctx: &Ctx<'_>,
    team_id: &str,
    provider: &Provider,
) -> Result<CredentialRecord, ApiError> {
    ctx.repo
        .credential(team_id, provider)
        .await?
        .ok_or_else(none_configured)
}

pub fn provider_not_configured() -> ApiError {
    ApiError::unavailable(
        "ComfyUI Cloud is not configured for this deployment",
        "COMFY_CLOUD_ORIGIN is not set",
    )
}

/// The 409 of the verify and proxy paths when there is no active key to use.
pub fn no_active_key() -> ApiError {
    ApiError::conflict("This team has no active ComfyUI Cloud key; PUT one first")
}

/// The stored key of an active credential, decrypted in memory. Only the verify and proxy
/// paths call this; the plaintext never reaches a log, an error or a response.
pub fn open_key(
    ctx: &Ctx<'_>,
    team_id: &str,
    provider: &Provider,
    credential: &SealedCredential,
) -> Result<String, ApiError> {
    let ciphertext = credential
        .ciphertext
        .as_deref()
        .filter(|_| credential.record.is_active())
        .ok_or_else(no_active_key)?;
    let plaintext = key_ring(ctx)?
        .open(ciphertext, &credential_aad(team_id, provider.name))
        .map_err(|e| {
            ApiError::unavailable(
                "The stored key could not be decrypted",
                format!("decrypt credential: {e:?}"),
            )
        })?;
    String::from_utf8(plaintext)
        .ok()
        .filter(|key| header_safe(key))
        .ok_or_else(|| {
            ApiError::conflict("The stored key cannot be sent in an HTTP header; PUT the key again")
        })
}

/// Asks the provider about `api_key` (unless verification is off) and says what it found.
async fn check_with_provider(ctx: &Ctx<'_>, api_key: &str) -> Result<Verification, ApiError> {
    let config = &ctx.config.upstream;
    if !config.verify {
        return Ok(Verification::disabled());
    }
    let origin = config
        .origin
        .as_deref()
        .ok_or_else(provider_not_configured)?;
    let answer = upstream::check_key(origin, api_key, config.verify_timeout_ms).await;
    Ok(Verification::from_answer(answer, app::now()))
}

/// The event of the provider's word on a key, recorded when it changes. Its id follows the
/// change's own event, so the two read in order.
fn verification_event(
    ctx: &Ctx<'_>,
    actor: &Actor,
    provider: &Provider,
    after: &Verification,
) -> AuditEvent {
    let mut event = audit(ctx, actor, after.audit_action(), provider);
    event.id = new_id(ctx.now + 1).to_string();
    event
}

/// The provider the path names. An unknown one is a 404 only for a caller who passes
/// authentication: an unauthenticated probe learns nothing about the registry.
async fn provider(ctx: &mut Ctx<'_>, matched: &Matched<'_>) -> Result<&'static Provider, ApiError> {
    match matched.param().and_then(|slug| provider_for(&slug)) {
        Ok(provider) => Ok(provider),
        Err(unknown) => {
            authenticate(ctx, TeamScope::Scoped).await?;
            Err(unknown)
        }
    }
}

/// One D1 round trip for a caller this isolate remembers (`auth::known_writer`): the guarded
/// write alone, which checks the caller, `If-Match` and the audit events in its own
/// statements. Otherwise the caller and the row are read first, as on every other route.
pub async fn put(ctx: &mut Ctx<'_>, matched: &Matched<'_>) -> Result<Response, ApiError> {
    let provider = provider(ctx, matched).await?;
    let if_match = ctx.header("If-Match");
    let known = Precondition::from_header(if_match.as_deref()).and_then(|precondition| {
        known_writer(ctx, |actor| actor.may_write_credentials().is_ok())
            .map(|actor| (actor, precondition))
    });
    let (actor, precondition) = match known {
        Some(known) => known,
        None => {
            let (actor, current) = authenticate_with_credential(ctx, provider).await?;
            actor.may_write_credentials()?;
            let precondition = Precondition::against(if_match.as_deref(), current.as_ref())?;
            (actor, precondition)
        }
    };
    let body: PutCredential = ctx.json_body().await?;
    body.validate()?;
    let ring = key_ring(ctx)?;
    let team_id = actor.team_id().unwrap_or_default();

    // Checked before anything is written: a key the provider refuses is never saved, and
    // the credential stays as it was.
    let verification = check_with_provider(ctx, &body.api_key).await?;
    if verification.state == State::Rejected {
        let origin = ctx.config.upstream.origin.as_deref().unwrap_or_default();
        return Err(rejected_on_save(ctx.config.environment, origin));
    }
    let sealed = ring.seal(
        body.api_key.as_bytes(),
        &credential_aad(team_id, provider.name),
    );
    let put_event = audit(ctx, &actor, "credential.put", provider);
    let verification_event = verification_event(ctx, &actor, provider, &verification);
    let record = ctx
        .repo
        .put_credential(
            team_id,
            provider,
            &sealed,
            ring.active_key_id(),
            &preview(&body.api_key),
            body.cloud_fallback,
            &verification,
            ctx.now,
            precondition,
            &PutEvents {
                put: &put_event,
                verification: &verification_event,
            },
            &WriteGuard::for_actor(&actor, ctx.now),
        )
        .await?;
    match record {
        Some(record) => Ok(respond(&record)),
        None => Err(refused_writer(ctx, &actor).await?.unwrap_or_else(stale)),
    }
}

/// Re-checks the stored key with the provider. A refusal now marks the key `rejected`
/// (it stays stored: the team decides what to do with it).
pub async fn verify(ctx: &mut Ctx<'_>, matched: &Matched<'_>) -> Result<Response, ApiError> {
    let provider = provider(ctx, matched).await?;
    let (actor, credential) = authenticate_with_sealed_credential(ctx, provider).await?;
    actor.may_write_credentials()?;
    let credential = credential.ok_or_else(none_configured)?;
    if !ctx.config.upstream.verify {
        return Err(ApiError::conflict(
            "Verification with the provider is turned off in this deployment (COMFY_CLOUD_VERIFY=off)",
        ));
    }
    let team_id = actor.team_id().unwrap_or_default();
    let verification = {
        let key = open_key(ctx, team_id, provider, &credential)?;
        check_with_provider(ctx, &key).await?
    };
    let events: Vec<AuditEvent> = (credential.record.verification.state != verification.state)
        .then(|| verification_event(ctx, &actor, provider, &verification))
        .into_iter()
        .collect();
    let written = ctx
        .repo
        .set_verification(
            team_id,
            provider,
            &verification,
            credential.record.version,
            &events,
            &WriteGuard::for_actor(&actor, ctx.now),
        )
        .await?;
    match written {
        Some(record) => Ok(respond(&record)),
        None => Err(refused_writer(ctx, &actor).await?.unwrap_or_else(|| {
            ApiError::conflict("The credential changed while it was being checked; retry")
        })),
    }
}

/// Never decrypts: the response is built from the stored preview and status.
pub async fn get(ctx: &mut Ctx<'_>, matched: &Matched<'_>) -> Result<Response, ApiError> {
    let provider = provider(ctx, matched).await?;
    let (actor, record) = authenticate_with_credential(ctx, provider).await?;
    actor.may_read_credentials()?;
    Ok(respond(&record.ok_or_else(none_configured)?))
}

pub async fn list(ctx: &mut Ctx<'_>) -> Result<Response, ApiError> {
    let actor = authenticate(ctx, TeamScope::Scoped).await?;
    actor.may_read_credentials()?;
    let page = super::page(ctx)?;
    let after = page
        .cursor
        .as_deref()
        .map(|c| {
            crate::core::providers::by_name(c)
                .map(|p| p.name)
                .ok_or_else(|| ApiError::invalid_request("`cursor` is not a cursor from this API"))
        })
        .transpose()?;
    let records = ctx
        .repo
        .credentials(actor.team_id().unwrap_or_default(), after, page.limit + 1)
        .await?;
    let (records, next_cursor) =
        crate::core::pages::page_of(records, page.limit, |r| r.provider.name.to_string());
    let views: Vec<_> = records.iter().map(CredentialRecord::view).collect();
    Ok(http::page(
        "cloud_providers",
        &views,
        next_cursor.as_deref(),
    ))
}

pub async fn patch(ctx: &mut Ctx<'_>, matched: &Matched<'_>) -> Result<Response, ApiError> {
    let provider = provider(ctx, matched).await?;
    let (actor, first_read) = authenticate_with_credential(ctx, provider).await?;
    actor.may_write_credentials()?;
    let body: PatchCredential = ctx.json_body().await?;
    let team_id = actor.team_id().unwrap_or_default();
    let if_match = ctx.header("If-Match");
    // A list of ETags pins the version read; `*` (any current representation) and no header
    // let a concurrent change be read again and retried.
    let pinned = if_match.as_deref().is_some_and(|h| !if_match_is_any(h));
    let mut first_read = Some(first_read);
    for _ in 0..ATTEMPTS {
        let current = match first_read.take() {
            Some(read) => read.ok_or_else(none_configured)?,
            None => existing(ctx, team_id, provider).await?,
        };
        check_if_match(if_match.as_deref(), Some(&current))?;
        if body.cloud_fallback && current.status == Status::Revoked {
            return Err(ApiError::conflict(FALLBACK_NEEDS_ACTIVE_KEY));
        }
        if current.cloud_fallback == body.cloud_fallback {
            return Ok(respond(&current));
        }
        let event = audit(ctx, &actor, "credential.patch", provider);
        let written = ctx
            .repo
            .set_cloud_fallback(
                team_id,
                provider,
                body.cloud_fallback,
                ctx.now,
                current.version,
                &event,
                &WriteGuard::for_actor(&actor, ctx.now),
            )
            .await?;
        if written.is_none() {
            if let Some(refused) = refused_writer(ctx, &actor).await? {
                return Err(refused);
            }
        }
        match (written, pinned) {
            (Some(record), _) => return Ok(respond(&record)),
            (None, true) => return Err(stale()),
            (None, false) => continue,
        }
    }
    Err(ApiError::conflict(
        "The credential is changing concurrently; retry",
    ))
}

/// Revokes. Repeating it is harmless: a revoked credential is returned as it is.
pub async fn delete(ctx: &mut Ctx<'_>, matched: &Matched<'_>) -> Result<Response, ApiError> {
    let provider = provider(ctx, matched).await?;
    let (actor, first_read) = authenticate_with_credential(ctx, provider).await?;
    actor.may_write_credentials()?;
    let team_id = actor.team_id().unwrap_or_default();
    let if_match = ctx.header("If-Match");
    // A list of ETags pins the version read; `*` (any current representation) and no header
    // let a concurrent change be read again and retried.
    let pinned = if_match.as_deref().is_some_and(|h| !if_match_is_any(h));
    let mut first_read = Some(first_read);
    for _ in 0..ATTEMPTS {
        let current = match first_read.take() {
            Some(read) => read.ok_or_else(none_configured)?,
            None => existing(ctx, team_id, provider).await?,
        };
        check_if_match(if_match.as_deref(), Some(&current))?;
        if current.status == Status::Revoked {
            return Ok(respond(&current));
        }
        let event = audit(ctx, &actor, "credential.delete", provider);
        let written = ctx
            .repo
            .revoke_credential(
                team_id,
                provider,
                ctx.now,
                current.version,
                &event,
                &WriteGuard::for_actor(&actor, ctx.now),
            )
            .await?;
        if written.is_none() {
            if let Some(refused) = refused_writer(ctx, &actor).await? {
                return Err(refused);
            }
        }
        match (written, pinned) {
            (Some(record), _) => return Ok(respond(&record)),
            (None, true) => return Err(stale()),
            (None, false) => continue,
        }
    }
    Err(ApiError::conflict(
        "The credential is changing concurrently; retry",
    ))
}
