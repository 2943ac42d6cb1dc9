//! One function per route: authenticate, authorize, validate, call the repository, shape
//! the response. The rules themselves live in `core`.

pub mod agents;
pub mod api_keys;
pub mod audit;
pub mod credentials;
pub mod health;
pub mod openapi;
pub mod teams;

use crate::core::{
    access::Actor,
    audit::AuditEvent,
    error::ApiError,
    ids::new_id,
    pages::{list_page, ListPage},
    providers::Provider,
    routes::query_pairs,
};

/// The `?limit=&cursor=` of a list request.
pub fn page(ctx: &Ctx<'_>) -> Result<ListPage, ApiError> {
    list_page(query_pairs(ctx.req.url()).into_iter())
}
use crate::edge::app::Ctx;

/// An audit event by this request's caller, to be written in the same D1 batch as the
/// change it records.
pub fn audit_event(
    ctx: &Ctx<'_>,
    actor: &Actor,
    action: &str,
    provider: Option<&Provider>,
    subject: Option<&str>,
) -> AuditEvent {
    AuditEvent {
        id: new_id(ctx.now).to_string(),
        team_id: actor.team_id().unwrap_or_default().to_string(),
        actor_kind: actor.kind().to_string(),
        actor_id: actor.id().to_string(),
        action: action.to_string(),
        provider: provider.map(|p| p.name.to_string()),
        subject: subject.map(str::to_string),
        created_at: ctx.now,
        request_id: ctx.log.request_id.clone(),
    }
}
