//! The proxy: a ComfyUI Cloud client calls us with a team credential, and we call the
//! provider with the team's stored key, which never leaves the edge. The rules are the
//! core's (`core/proxy.rs`); this adapter applies them to `worker` requests:
//!
//! 1. the path is checked before anything else, and only the provider's prefixes pass;
//! 2. the caller authenticates (D1: the key or membership, and the sealed credential, in
//!    one round trip), and the team's provider limiter admits the call;
//! 3. the upstream request is built from an allowlist of headers, our key set last, with
//!    the body streamed (counted towards the 100 MB cap as it goes);
//! 4. the response is relayed with an allowlist of headers, its body streamed, and a
//!    `Proxy-Status` that tells a relayed answer from one of ours.

use std::rc::Rc;

use futures_util::{StreamExt, TryStreamExt};
use js_sys::Uint8Array;
use wasm_bindgen::JsValue;
use worker::{
    worker_sys::FixedLengthStream as FixedLengthStreamSys, Date, FixedLengthStream, Headers,
    Response, ResponseBody, ResponseBuilder,
};

use super::{
    app::Ctx,
    auth::authenticate_with_sealed_credential,
    handlers::credentials::{audit, no_active_key, open_key, provider_not_configured},
    limiter,
    provider::{self, Sent, Upload},
};
use crate::core::{
    api_keys::LAST_USED_RESOLUTION_MS,
    credentials::header_safe,
    error::{ApiError, ErrorKind},
    log::ProxyLog,
    providers,
    proxy::{self, Mount, MAX_UPLOAD_BYTES},
    ratelimit::{whole_seconds, Decision},
    verify::Verification,
};

pub async fn handle(ctx: &mut Ctx<'_>, mount: Mount) -> Result<Response, ApiError> {
    ctx.log.proxy = Some(ProxyLog {
        mount: mount.as_str(),
        ..Default::default()
    });
    let method = ctx.req.method().to_string();
    if !proxy::METHODS.contains(&method.as_str()) {
        let e = ApiError::new(
            ErrorKind::MethodNotAllowed,
            "Method not allowed through the proxy",
        );
        let response = super::http::error(&e);
        let _ = response.headers().set("Allow", &proxy::METHODS.join(", "));
        return Ok(response);
    }
    let url = ctx.req.url().to_string();
    let (raw_path, query) = proxy::url_path_and_query(&url);
    let config = ctx.config.clone();
    let upstream = &config.upstream;
    let path = proxy::upstream_path(mount, raw_path, &upstream.prefixes)?;
    let target = proxy::upstream_url(
        upstream
            .origin
            .as_deref()
            .ok_or_else(provider_not_configured)?,
        &path,
        query,
    );

    let provider = providers::by_slug("comfy-cloud").expect("comfy-cloud is registered");
    let (actor, credential) = authenticate_with_sealed_credential(ctx, provider).await?;
    actor.may_use_provider()?;
    let credential = credential.ok_or_else(no_active_key)?;
    let team_id = actor.team_id().unwrap_or_default().to_string();
    admit_team(ctx, &team_id).await?;
    let declared = proxy::check_declared_length(ctx.header("Content-Length").as_deref())?;

    let headers = Headers::new();
    for (name, value) in ctx.req.headers().entries() {
        // A value the runtime would log (non-ASCII) is not forwarded either.
        if proxy::forwards_request_header(&name) && header_safe(&value) {
            let _ = headers.set(&name, &value);
        }
    }
    let upload = Rc::new(Upload::default());
    let has_body = !matches!(method.as_str(), "GET" | "HEAD") && ctx.req.has_body();
    let body = if has_body {
        Some(counting_body(ctx, &upload, declared)?)
    } else {
        None
    };
    {
        // Our key, set last, over anything of the same name; it lives only in this scope.
        let key = open_key(ctx, &team_id, provider, &credential)?;
        headers
            .set("Authorization", &format!("Bearer {key}"))
            .map_err(|_| ApiError::internal("the stored key is not a valid header value"))?;
    }

    let sent = provider::send(
        (&method, &target),
        &headers,
        body.as_ref(),
        upstream.timeout_ms,
        has_body.then_some(&*upload),
    )
    .await;
    if let Some(log) = ctx.log.proxy.as_mut() {
        log.bytes_in = Some(upload.bytes.get());
    }
    let response = match sent {
        _ if upload.over_cap.get() => return Err(proxy::upload_too_large()),
        Sent::Timeout => return Err(proxy::upstream_timeout()),
        Sent::NetworkError(detail) => return Err(proxy::upstream_unreachable(detail)),
        Sent::Response(response) => response,
    };
    let status = response.status_code();
    record_use(ctx, &actor, &team_id, provider, &credential.record, status).await;
    Ok(relay(ctx, &method, response))
}

/// The team's own limit in front of the provider (seed 002's 600 a minute). It guards the
/// team's quota at the provider, so an unreachable limiter fails closed.
async fn admit_team(ctx: &Ctx<'_>, team_id: &str) -> Result<(), ApiError> {
    let policy = &ctx.config.upstream.team_limit;
    match limiter::check(
        ctx.env,
        &format!("provider:comfy_cloud|team:{team_id}"),
        policy,
        false,
    )
    .await
    {
        Ok(Decision::Allowed { .. }) => Ok(()),
        Ok(Decision::Limited { retry_after_ms }) => Err(ApiError::new(
            ErrorKind::RateLimited,
            "Rate limit exceeded: this team's ComfyUI Cloud budget (requests per minute) is spent",
        )
        .with_retry_after(whole_seconds(retry_after_ms))),
        Err(e) => Err(ApiError::unavailable(
            "Rate limiting is unavailable; retry shortly",
            format!("provider limiter: {e}"),
        )),
    }
}

/// The caller's body as a stream that counts its bytes, errors once they pass the cap, and
/// notes when it ends: a chunked upload is cut off at 100 MB without ever being held whole,
/// and the provider's time to answer starts when the upload is done. With a declared
/// length it goes through workerd's `FixedLengthStream`, so the provider gets that
/// `Content-Length` (and the caller is held to it).
fn counting_body(
    ctx: &mut Ctx<'_>,
    upload: &Rc<Upload>,
    declared: Option<u64>,
) -> Result<JsValue, ApiError> {
    let (counter, finisher) = (upload.clone(), upload.clone());
    let stream = ctx
        .req
        .stream()
        .map_err(|_| ApiError::invalid_request("Request body could not be read"))?
        .and_then(move |chunk| {
            let total = counter.bytes.get() + chunk.len() as u64;
            counter.bytes.set(total);
            futures_util::future::ready(if total > MAX_UPLOAD_BYTES {
                counter.over_cap.set(true);
                Err(worker::Error::RustError(
                    "request body over the 100 MB limit".into(),
                ))
            } else {
                Ok(chunk)
            })
        })
        .chain(
            futures_util::stream::once(async move {
                finisher
                    .finished_at
                    .set(Some(Date::now().as_millis() as f64));
                None
            })
            .filter_map(futures_util::future::ready),
        );
    let body: JsValue = match declared {
        Some(length) => {
            let fixed: FixedLengthStreamSys = FixedLengthStream::wrap(stream, length).into();
            fixed.readable().into()
        }
        None => wasm_streams::ReadableStream::from_stream(
            stream
                .map_ok(|chunk| JsValue::from(Uint8Array::from(chunk.as_slice())))
                .map_err(|e| JsValue::from_str(&e.to_string()))
                .boxed_local(),
        )
        .into_raw()
        .into(),
    };
    Ok(body)
}

/// After the provider answered: `last_used_at` (at most once a minute), and on a 401 the
/// key marked `rejected`. A failure here is logged, never turned into the caller's error:
/// the provider's answer is already in hand.
async fn record_use(
    ctx: &mut Ctx<'_>,
    actor: &crate::core::access::Actor,
    team_id: &str,
    provider: &'static providers::Provider,
    record: &crate::core::credentials::CredentialRecord,
    status: u16,
) {
    if let Some(log) = ctx.log.proxy.as_mut() {
        log.upstream_status = Some(status);
    }
    let stale_use = record
        .last_used_at
        .is_none_or(|at| ctx.now - at >= LAST_USED_RESOLUTION_MS);
    let rejected = (status == 401).then(|| {
        let verification = Verification::rejected_on_use(ctx.now);
        let event = audit(ctx, actor, verification.audit_action(), provider);
        (verification, event)
    });
    let recheck_due = record.verification.state != crate::core::verify::State::Rejected
        || record
            .verification
            .checked_at
            .is_none_or(|at| ctx.now - at >= LAST_USED_RESOLUTION_MS);
    if !(stale_use || rejected.is_some() && recheck_due) {
        return;
    }
    let written = ctx
        .repo
        .record_proxy_use(
            team_id,
            provider,
            ctx.now,
            LAST_USED_RESOLUTION_MS,
            record.version,
            rejected.as_ref().map(|(v, e)| (v, e)),
        )
        .await;
    if let Err(e) = written {
        ctx.log.error = e.internal_detail;
    }
}

/// The provider's response, relayed: its status and body as they are, allowlisted headers,
/// `Proxy-Status`, and never a `Set-Cookie`.
fn relay(ctx: &mut Ctx<'_>, method: &str, response: Response) -> Response {
    let status = response.status_code();
    let headers = Headers::new();
    for (name, value) in response.headers().entries() {
        if proxy::returns_response_header(&name, status) {
            let _ = headers.set(&name, &value);
        }
    }
    let _ = headers.set("Proxy-Status", &proxy::proxy_status(status));
    let declared = response
        .headers()
        .get("Content-Length")
        .ok()
        .flatten()
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(log) = ctx.log.proxy.as_mut() {
        log.bytes_out = declared;
    }
    let builder = ResponseBuilder::new()
        .with_status(status)
        .with_headers(headers);
    match response.body() {
        ResponseBody::Stream(body) if method != "HEAD" => builder.stream(body.clone()),
        _ => builder.empty(),
    }
}
