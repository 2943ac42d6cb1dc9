use worker::Response;

use crate::core::{
    access::KEYS_CANNOT_MANAGE,
    api_keys::{ApiKeyRecord, CreateApiKey},
    auth::api_key,
    error::ApiError,
    ids::{new_id, parse_uuid},
    json::ToJson,
    pages::{page_of, uuid_cursor},
    routes::Matched,
    teams::cap_reached,
};
use crate::edge::{
    app::Ctx,
    auth::{authenticate, TeamScope},
    http,
};

pub async fn create(ctx: &mut Ctx<'_>) -> Result<Response, ApiError> {
    let actor = authenticate(ctx, TeamScope::Scoped).await?;
    actor.may_manage(KEYS_CANNOT_MANAGE)?;
    let new = ctx.json_body::<CreateApiKey>().await?.validate(ctx.now)?;
    let key = api_key::generate(new.kind);
    let team_id = actor.team_id().unwrap_or_default();
    let record = new.into_record(
        new_id(ctx.now).to_string(),
        team_id,
        api_key::preview(&key),
        ctx.now,
    );
    let event = super::audit_event(ctx, &actor, "api_key.created", None, Some(&record.id));
    let cap = ctx.config.caps.active_keys_per_team;
    if !ctx
        .repo
        .insert_api_key(&record, &api_key::hash_key(&key), actor.id(), cap, &event)
        .await?
    {
        return Err(cap_reached(
            "active API keys",
            cap,
            "MAX_ACTIVE_KEYS_PER_TEAM",
        ));
    }
    // The only time the key is ever shown.
    Ok(http::json(201, record.view(Some(&key)).to_json()))
}

pub async fn list(ctx: &mut Ctx<'_>) -> Result<Response, ApiError> {
    let actor = authenticate(ctx, TeamScope::Scoped).await?;
    actor.may_manage(KEYS_CANNOT_MANAGE)?;
    let page = super::page(ctx)?;
    let after = uuid_cursor(&page)?;
    let keys = ctx
        .repo
        .api_keys(
            actor.team_id().unwrap_or_default(),
            after.as_deref(),
            page.limit + 1,
        )
        .await?;
    let (keys, next_cursor) = page_of(keys, page.limit, |k| k.id.clone());
    let views: Vec<_> = keys.iter().map(|k| k.view(None)).collect();
    Ok(http::page("api_keys", &views, next_cursor.as_deref()))
}

/// Revocation is immediate: authentication reads the key's row on every request.
pub async fn revoke(ctx: &mut Ctx<'_>, matched: &Matched<'_>) -> Result<Response, ApiError> {
    let actor = authenticate(ctx, TeamScope::Scoped).await?;
    actor.may_manage(KEYS_CANNOT_MANAGE)?;
    let not_found = || ApiError::not_found("No such API key in this team");
    let id = parse_uuid(&matched.param()?)
        .ok_or_else(not_found)?
        .to_string();
    let event = super::audit_event(ctx, &actor, "api_key.revoked", None, Some(&id));
    let record: ApiKeyRecord = ctx
        .repo
        .revoke_api_key(actor.team_id().unwrap_or_default(), &id, ctx.now, &event)
        .await?
        .ok_or_else(not_found)?;
    Ok(http::json(200, record.view(None).to_json()))
}
