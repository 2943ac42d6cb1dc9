use worker::Response;

use crate::core::{audit::page_request, error::ApiError, pages::page_of, routes::query_pairs};
use crate::edge::{
    app::Ctx,
    auth::{authenticate, TeamScope},
    http,
};

/// Newest first; `next_cursor` is set while older events remain.
pub async fn list(ctx: &mut Ctx<'_>) -> Result<Response, ApiError> {
    let actor = authenticate(ctx, TeamScope::Scoped).await?;
    actor.may_manage("The audit trail cannot be read with an API key")?;
    let page = page_request(query_pairs(ctx.req.url()).into_iter())?;
    let events = ctx
        .repo
        .audit_events(actor.team_id().unwrap_or_default(), &page)
        .await?;
    let (events, next_cursor) = page_of(events, page.limit, |e| e.id.clone());
    let views: Vec<_> = events.iter().map(|e| e.view()).collect();
    Ok(http::page("audit_events", &views, next_cursor.as_deref()))
}
