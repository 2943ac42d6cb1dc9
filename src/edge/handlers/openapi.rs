use worker::Response;

use crate::core::error::ApiError;
use crate::edge::{app::Ctx, settings};

/// The API description: `public/openapi.json`, which build.rs generates from `openapi.yaml`,
/// served from the assets rather than embedded in the wasm. Unauthenticated.
pub async fn openapi(ctx: &mut Ctx<'_>) -> Result<Response, ApiError> {
    let unavailable = |detail: String| {
        ApiError::unavailable(
            "The API description is unavailable",
            format!("openapi.json: {detail}"),
        )
    };
    let (status, response) = settings::fetch_asset(&ctx.req, ctx.env, "/openapi.json")
        .await
        .map_err(unavailable)?;
    if !(200..400).contains(&status) {
        return Err(unavailable(format!("assets answered {status}")));
    }
    Ok(settings::passed_on(
        &ctx.req,
        &response,
        [("Cache-Control", "public, max-age=300".to_string())],
    ))
}
