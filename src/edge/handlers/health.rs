use crate::core::error::ApiError;
use crate::edge::{app::Ctx, http};
use worker::Response;

pub async fn healthz(ctx: &mut Ctx<'_>) -> Result<Response, ApiError> {
    ctx.repo.ping().await.map_err(|e| {
        ApiError::unavailable("D1 is unavailable", e.internal_detail.unwrap_or_default())
    })?;
    Ok(http::json(200, r#"{"status":"ok","d1":"ok"}"#.to_string()))
}
