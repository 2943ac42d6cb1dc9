//! The outbound client for ComfyUI Cloud: the only code that sends a request to the
//! provider. Every request it sends carries `redirect: manual` (workers-rs follows
//! redirects by default, and would forward the key to whatever host a `Location` names)
//! and gives up when no response headers arrive in time.

use std::{cell::Cell, time::Duration};

use futures_util::future::{select, Either};
use wasm_bindgen::{JsCast, JsValue};
use worker::js_sys::Reflect;
use worker::wasm_bindgen_futures::JsFuture;
use worker::{AbortController, Date, Delay, Fetch, Headers, Response};

use super::outbound::{self, RequestRedirect};
use crate::core::{
    credentials::header_safe,
    verify::{keeps_draining, ProviderAnswer, ACCOUNT_PATH},
};

pub enum Sent {
    Response(Response),
    /// No response headers within the time limit; the request was aborted.
    Timeout,
    /// The fetch failed: the detail is for the log, and never holds a header.
    NetworkError(String),
}

/// How far a streamed request body has got: the proxy's counting stream updates it.
#[derive(Default)]
pub struct Upload {
    pub bytes: Cell<u64>,
    pub over_cap: Cell<bool>,
    /// When the last byte went out (ms since the epoch); `None` while still sending.
    pub finished_at: Cell<Option<f64>>,
}

/// Sends `method` to `url` with `headers` and `body`, redirects returned, not followed.
/// The provider has `timeout_ms` to send response headers, counted from the end of `upload`
/// when there is one: a slow 100 MB upload is not a slow provider.
pub async fn send(
    (method, url): (&str, &str),
    headers: &Headers,
    body: Option<&JsValue>,
    timeout_ms: u32,
    upload: Option<&Upload>,
) -> Sent {
    let request = match outbound::request(method, url, headers, body, RequestRedirect::Manual) {
        Ok(request) => request,
        Err(e) => return Sent::NetworkError(format!("build upstream request: {e}")),
    };
    let controller = AbortController::default();
    let signal = controller.signal();
    let fetch = Fetch::Request(request);
    let mut response = std::pin::pin!(fetch.send_with_signal(&signal));
    let mut wait_ms = f64::from(timeout_ms);
    loop {
        let deadline = Delay::from(Duration::from_millis(wait_ms as u64));
        match select(response.as_mut(), deadline).await {
            Either::Left((Ok(response), _)) => return Sent::Response(response),
            Either::Left((Err(e), _)) => return Sent::NetworkError(format!("upstream fetch: {e}")),
            Either::Right(_) => {
                let still_sending = upload.map(|u| (u.finished_at.get(), u.over_cap.get()));
                let left = |at: f64| at + f64::from(timeout_ms) - Date::now().as_millis() as f64;
                wait_ms = match still_sending {
                    // The body is still going up: the clock has not started.
                    Some((None, false)) => f64::from(timeout_ms),
                    // The body finished meanwhile: what is left of its time.
                    Some((Some(at), _)) if left(at) > 0.0 => left(at),
                    _ => {
                        controller.abort();
                        return Sent::Timeout;
                    }
                };
            }
        }
    }
}

/// The check's answer body, discarded: read to its end when it is small, so the runtime
/// keeps the connection for the next check, else cancelled (`core::verify::keeps_draining`).
/// The reading gets what is left of the check's time: until `deadline` (ms since the epoch).
async fn dispose(response: Response, deadline: f64) {
    let length = response.headers().get("Content-Length").ok().flatten();
    let raw: web_sys::Response = response.into();
    let Some(body) = raw.body() else {
        return;
    };
    let reader: web_sys::ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    let mut read = 0u64;
    while keeps_draining(length.as_deref(), read) {
        let left = deadline - Date::now().as_millis() as f64;
        if left < 1.0 {
            break;
        }
        let chunk = JsFuture::from(reader.read());
        let chunk = match select(chunk, Delay::from(Duration::from_millis(left as u64))).await {
            Either::Left((Ok(chunk), _)) => chunk,
            // The stream failed: nothing left to keep.
            Either::Left((Err(_), _)) => return,
            Either::Right(_) => break,
        };
        let field = |name: &str| Reflect::get(&chunk, &JsValue::from_str(name)).ok();
        if field("done").and_then(|done| done.as_bool()) != Some(false) {
            return;
        }
        let bytes = field("value").map_or(0.0, |value| {
            Reflect::get(&value, &JsValue::from_str("byteLength"))
                .ok()
                .and_then(|n| n.as_f64())
                .unwrap_or(0.0)
        });
        read += bytes as u64;
    }
    let _ = reader.cancel();
}

/// `GET {origin}/developer/api/v1/account` with the key as Bearer: the provider's word on
/// whether the key is good. Only the status is kept; the body is discarded ([`dispose`]),
/// never looked at or echoed.
pub async fn check_key(origin: &str, api_key: &str, timeout_ms: u32) -> ProviderAnswer {
    // Checked first: the runtime logs a header value that is not ASCII. PUT already refuses
    // such a key; one stored before that rule can't be a key the provider issued.
    if !header_safe(api_key) {
        return ProviderAnswer::Status(401);
    }
    let headers = Headers::new();
    let authorization = format!("Bearer {api_key}");
    if headers.set("Authorization", &authorization).is_err()
        || headers.set("Accept", "application/json").is_err()
    {
        return ProviderAnswer::Status(401);
    }
    let url = format!("{origin}{ACCOUNT_PATH}");
    let deadline = Date::now().as_millis() as f64 + f64::from(timeout_ms);
    match send(("GET", &url), &headers, None, timeout_ms, None).await {
        Sent::Response(response) => {
            let status = response.status_code();
            dispose(response, deadline).await;
            ProviderAnswer::Status(status)
        }
        Sent::Timeout => ProviderAnswer::Timeout,
        Sent::NetworkError(_) => ProviderAnswer::NetworkError,
    }
}
