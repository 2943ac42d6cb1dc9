//! The team settings page: its files come from Workers Static Assets (the `ASSETS` binding,
//! `public/`), and leave with the page's security headers. The worker runs first for every
//! path (`run_worker_first`), so only the paths `core::settings` allows reach the assets.

use worker::{Env, Headers, Method, Request, RequestInit, Response, ResponseBody, ResponseBuilder};

use crate::core::{
    config::Config,
    error::{ApiError, ErrorKind},
    proxy, settings,
};

/// Response headers of the asset that are passed on: what it is and how to revalidate it.
const KEPT: [&str; 4] = ["Content-Type", "Content-Length", "ETag", "Last-Modified"];

pub async fn serve(req: &Request, env: &Env, config: &Config) -> Result<Response, ApiError> {
    let method = req.inner().method();
    if method != "GET" && method != "HEAD" {
        let response = crate::edge::http::error(&ApiError::new(
            ErrorKind::MethodNotAllowed,
            "Method not allowed on this page",
        ));
        let _ = response.headers().set("Allow", "GET, HEAD");
        return Ok(response);
    }
    let path = req.path();
    let asset = settings::asset_path(&path).ok_or_else(|| ApiError::not_found("No such page"))?;
    // The URL as the runtime gives it (no URL parser linked into the worker just for this).
    let url = req.inner().url();
    let origin = proxy::url_origin(&url)
        .ok_or_else(|| ApiError::internal("settings: a request URL without an origin"))?;
    let asset_url = format!("{origin}{asset}");

    let headers = Headers::new();
    if let Some(tag) = req.headers().get("If-None-Match").ok().flatten() {
        let _ = headers.set("If-None-Match", &tag);
    }
    let mut init = RequestInit::new();
    init.with_method(if method == "HEAD" {
        Method::Head
    } else {
        Method::Get
    })
    .with_headers(headers);
    let request = Request::new_with_init(&asset_url, &init)
        .map_err(|e| ApiError::internal(format!("settings request: {e}")))?;
    let unavailable = |e: worker::Error| {
        ApiError::unavailable("The settings page is unavailable", format!("assets: {e}"))
    };
    let fetcher = env.assets("ASSETS").map_err(unavailable)?;
    let response = fetcher.fetch_request(request).await.map_err(unavailable)?;
    let status = response.status_code();
    if status == 404 {
        return Err(ApiError::not_found("No such page"));
    }
    if !(200..400).contains(&status) {
        return Err(ApiError::unavailable(
            "The settings page is unavailable",
            format!("assets answered {status}"),
        ));
    }

    let out = Headers::new();
    for name in KEPT {
        if let Some(value) = response.headers().get(name).ok().flatten() {
            let _ = out.set(name, &value);
        }
    }
    for (name, value) in settings::security_headers(&config.settings_frame_ancestors) {
        let _ = out.set(name, &value);
    }
    let builder = ResponseBuilder::new().with_status(status).with_headers(out);
    Ok(match response.body() {
        ResponseBody::Stream(body) if method != "HEAD" => builder.stream(body.clone()),
        ResponseBody::Body(bytes) if method != "HEAD" => builder.fixed(bytes.clone()),
        _ => builder.empty(),
    })
}
