use crate::core::{error::ApiError, routes::OPENAPI_JSON};
use crate::edge::app::Ctx;
use worker::{Headers, Response, ResponseBuilder};

/// The API description, embedded at build time from `openapi.yaml`. Unauthenticated.
pub async fn openapi(_ctx: &mut Ctx<'_>) -> Result<Response, ApiError> {
    let headers = Headers::new();
    let _ = headers.set("Content-Type", "application/json");
    let _ = headers.set("Cache-Control", "public, max-age=300");
    Ok(ResponseBuilder::new()
        .with_status(200)
        .with_headers(headers)
        .fixed(OPENAPI_JSON.as_bytes().to_vec()))
}
