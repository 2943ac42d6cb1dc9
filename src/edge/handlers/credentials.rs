use worker::Response;

use crate::core::{
    access::Actor,
    audit::AuditEvent,
    credentials::{
        check_if_match, preview, provider_for, CredentialRecord, PatchCredential, PutCredential,
        Status, FALLBACK_NEEDS_ACTIVE_KEY,
    },
    crypto::{credential_aad, KeyRing},
    error::{ApiError, ErrorKind},
    ids::new_id,
    providers::Provider,
    routes::Matched,
};
use crate::edge::{
    app::Ctx,
    auth::{authenticate, authenticate_with_credential, TeamScope},
    http,
};

/// How often a PATCH or DELETE re-reads and retries when a concurrent write moved the row
/// between its read and its write (only without `If-Match`, which turns that into 412).
const ATTEMPTS: usize = 3;

fn respond(record: &CredentialRecord) -> Response {
    let response = http::json(200, &record.view());
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

fn audit(ctx: &Ctx<'_>, actor: &Actor, action: &str, provider: &Provider) -> AuditEvent {
    AuditEvent {
        id: new_id(ctx.now).to_string(),
        team_id: actor.team_id().unwrap_or_default().to_string(),
        actor_kind: actor.kind().to_string(),
        actor_id: actor.id().to_string(),
        action: action.to_string(),
        provider: Some(provider.name.to_string()),
        created_at: ctx.now,
        request_id: ctx.log.request_id.clone(),
    }
}

fn stale() -> ApiError {
    ApiError::new(
        ErrorKind::PreconditionFailed,
        "The credential has changed since you read it (If-Match)",
    )
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

pub async fn put(ctx: &mut Ctx<'_>, matched: &Matched<'_>) -> Result<Response, ApiError> {
    let provider = provider(ctx, matched).await?;
    let (actor, current) = authenticate_with_credential(ctx, provider).await?;
    actor.may_write_credentials()?;
    let body: PutCredential = ctx.json_body().await?;
    body.validate()?;
    let ring = key_ring(ctx)?;
    let team_id = actor.team_id().unwrap_or_default();

    let expected = check_if_match(ctx.header("If-Match").as_deref(), current.as_ref())?;
    let sealed = ring.seal(
        body.api_key.as_bytes(),
        &credential_aad(team_id, provider.name),
    );
    let event = audit(ctx, &actor, "credential.put", provider);
    let record = ctx
        .repo
        .put_credential(
            team_id,
            provider,
            &sealed,
            ring.active_key_id(),
            &preview(&body.api_key),
            body.cloud_fallback,
            ctx.now,
            expected,
            &event,
        )
        .await?
        .ok_or_else(stale)?;
    Ok(respond(&record))
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
    let records = ctx
        .repo
        .credentials(actor.team_id().unwrap_or_default())
        .await?;
    let views: Vec<_> = records.iter().map(CredentialRecord::view).collect();
    Ok(http::json(
        200,
        &serde_json::json!({ "cloud_providers": views }),
    ))
}

pub async fn patch(ctx: &mut Ctx<'_>, matched: &Matched<'_>) -> Result<Response, ApiError> {
    let provider = provider(ctx, matched).await?;
    let (actor, first_read) = authenticate_with_credential(ctx, provider).await?;
    actor.may_write_credentials()?;
    let body: PatchCredential = ctx.json_body().await?;
    let team_id = actor.team_id().unwrap_or_default();
    let if_match = ctx.header("If-Match");
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
            )
            .await?;
        match (written, &if_match) {
            (Some(record), _) => return Ok(respond(&record)),
            (None, Some(_)) => return Err(stale()),
            (None, None) => continue,
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
            .revoke_credential(team_id, provider, ctx.now, current.version, &event)
            .await?;
        match (written, &if_match) {
            (Some(record), _) => return Ok(respond(&record)),
            (None, Some(_)) => return Err(stale()),
            (None, None) => continue,
        }
    }
    Err(ApiError::conflict(
        "The credential is changing concurrently; retry",
    ))
}
