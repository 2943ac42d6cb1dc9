use worker::Response;

use crate::core::error::ApiError;
use crate::edge::{app::Ctx, settings};

/// The API description: `public/openapi.json`, which build.rs generates from `openapi.yaml`,
/// served from the assets rather than embedded in the wasm. Unauthenticated.
pub async fn openapi(ctx: &mut Ctx<'_>) -> Result<Response, ApiError> {
    let what = "The API description";
    let response = settings::fetch_asset(&ctx.req, ctx.env, "/openapi.json", what)
        .await?
        .ok_or_else(|| {
            ApiError::unavailable(
                format!("{what} is unavailable"),
                "/openapi.json: not in the assets (build.rs writes it)",
            )
        })?;
    Ok(settings::passed_on(
        &ctx.req,
        &response,
        [("Cache-Control", "public, max-age=300".to_string())],
    ))
}
