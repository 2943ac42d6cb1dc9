//! Agents and fallback routing: heartbeats from device keys, the team's agent list, and the
//! routing decision. Presence is the team's `AgentPresence` object; which device keys count
//! is D1's word, read on every request, so a revoked key drops out at once.

use std::{cell::RefCell, future::Future};

use futures_util::future::{join, OptionFuture};
use worker::Response;

use super::credentials::audit;
use crate::core::{
    access::Actor,
    beats::BeatCache,
    error::{ApiError, ErrorKind},
    json::{Obj, ToJson},
    pages::{page_of, uuid_cursor},
    presence::{self, Heartbeat, RouteRequest, Seen},
    providers,
};
use crate::edge::{
    app::Ctx,
    auth::{authenticate, authenticate_with_devices, remembered_team, TeamScope},
    http, presence as presence_object,
};

thread_local! {
    /// Heartbeats this isolate wrote lately (`core/beats.rs`).
    static BEATS: RefCell<BeatCache> = RefCell::new(BeatCache::default());
}

fn presence_unavailable(e: worker::Error) -> ApiError {
    ApiError::unavailable(
        "Agent presence is unavailable; retry shortly",
        format!("presence: {e}"),
    )
}

fn fail_presence(ctx: &Ctx<'_>) -> bool {
    ctx.config.test_hooks && ctx.header("X-Test-Fail-Presence").is_some()
}

/// `POST /api/v1/agents/heartbeat`: device keys only. No D1 write: the time goes to the
/// team's presence object, at most once a second per agent and isolate.
pub async fn heartbeat(ctx: &mut Ctx<'_>) -> Result<Response, ApiError> {
    // Unscoped: a JWT is refused as such (403), whatever X-Team-ID says or lacks.
    let actor = authenticate(ctx, TeamScope::Unscoped).await?;
    let Actor::Key {
        kind: crate::core::auth::api_key::KeyKind::Device,
        key_id,
        team_id,
        ..
    } = &actor
    else {
        return Err(ApiError::forbidden(
            "Only device (dk-) keys send agent heartbeats",
        ));
    };
    let body: Heartbeat = ctx.optional_json_body().await?;
    body.validate()?;
    let seen = Seen {
        agent_id: key_id.clone(),
        last_seen: ctx.now,
        version: body.version,
    };
    let fail = fail_presence(ctx);
    // A heartbeat this isolate wrote within the last second, with the same version, is not
    // written again (`core/beats.rs`); the device key was still read from D1 just now.
    if fail || !BEATS.with_borrow_mut(|beats| beats.recorded(team_id, &seen, ctx.now)) {
        ctx.log.do_calls += 1;
        let written = presence_object::beat(ctx.env, team_id, seen.clone(), fail).await;
        BEATS.with_borrow_mut(|beats| match written {
            Ok(()) => beats.written(team_id, &seen, ctx.now),
            Err(_) => beats.forget(team_id, &seen.agent_id),
        });
        written.map_err(presence_unavailable)?;
    }
    Ok(http::json(
        200,
        Obj::new()
            .str("agent_id", key_id)
            .int(
                "next_heartbeat_in",
                presence::HEARTBEAT_INTERVAL_SECS.into(),
            )
            .done(),
    ))
}

/// The team's presence read, counted. It owns what it needs, so it can run beside a D1 read
/// that borrows `ctx`.
fn read_presence(
    ctx: &mut Ctx<'_>,
    team_id: &str,
) -> impl Future<Output = Result<Vec<Seen>, ApiError>> + 'static {
    ctx.log.do_calls += 1;
    let (env, team, now, fail) = (
        ctx.env.clone(),
        team_id.to_string(),
        ctx.now,
        fail_presence(ctx),
    );
    async move {
        presence_object::read(&env, &team, now, fail)
            .await
            .map_err(presence_unavailable)
    }
}

/// `GET /api/v1/agents`: every non-revoked device key, online or not.
pub async fn list(ctx: &mut Ctx<'_>) -> Result<Response, ApiError> {
    let actor = authenticate(ctx, TeamScope::Scoped).await?;
    actor.may_list_agents()?;
    let page = super::page(ctx)?;
    let after = uuid_cursor(&page)?;
    let team_id = actor.team_id().unwrap_or_default();
    let presence = read_presence(ctx, team_id);
    let (devices, seen) = join(
        ctx.repo
            .device_keys(team_id, ctx.now, after.as_deref(), page.limit + 1),
        presence,
    )
    .await;
    let (devices, seen) = (devices?, seen?);
    let (devices, next_cursor) = page_of(devices, page.limit, |d| d.id.clone());
    let agents = presence::agents(&devices, &seen, ctx.now, ctx.config.agent_ttl_secs);
    Ok(http::page("agents", &agents, next_cursor.as_deref()))
}

/// `POST /api/v1/tasks/route`: a local agent, else ComfyUI Cloud when fallback allows it,
/// else 503 `no_compute_available` saying why. Fallbacks and refusals are audited.
///
/// One D1 round trip (the caller, the credential and the device keys in one batch) and one
/// presence read. When this isolate authenticated the caller in the last minute, the
/// presence read runs beside the batch, for the team remembered; its answer is used only if
/// the batch then finds the caller in that same team.
pub async fn route(ctx: &mut Ctx<'_>) -> Result<Response, ApiError> {
    let provider = providers::by_slug("comfy-cloud").expect("comfy-cloud is registered");
    let early = remembered_team(ctx).map(|team| {
        let read = read_presence(ctx, &team);
        async move { (team, read.await) }
    });
    let (authenticated, early) = join(
        authenticate_with_devices(ctx, provider),
        OptionFuture::from(early),
    )
    .await;
    let (actor, credential, devices) = authenticated?;
    actor.may_route_tasks()?;
    let request: RouteRequest = ctx.optional_json_body().await?;
    request.validate()?;
    let team_id = actor.team_id().unwrap_or_default();
    let seen = match early {
        Some((team, seen)) if team == team_id => seen,
        _ => read_presence(ctx, team_id).await,
    }?;
    let online = presence::online(&devices, &seen, ctx.now, ctx.config.agent_ttl_secs);
    let decision = presence::decide(&online, credential.as_ref());
    let action = match &decision {
        Ok(presence::Target::Local { .. }) => None,
        Ok(presence::Target::ComfyCloud) => Some("task.routed_to_cloud"),
        Err(_) => Some("task.no_compute"),
    };
    if let Some(action) = action {
        let event = audit(ctx, &actor, action, provider);
        ctx.repo.insert_audit_event(&event).await?;
    }
    match decision {
        Ok(target) => Ok(http::json(
            200,
            target.view(online.len(), ctx.now).to_json(),
        )),
        Err(why) => Ok(http::json(
            ErrorKind::NoComputeAvailable.status(),
            presence::no_compute_body(why, online.len(), ctx.now),
        )),
    }
}
