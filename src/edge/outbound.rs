//! Subrequests built on the runtime's own `RequestInit`. worker's `RequestInit` turns its
//! `cf` properties into JS through serde_wasm_bindgen, which links that serializer and the
//! image-resizing types into the wasm although no request of ours sets a `cf` property.

use serde::de::DeserializeOwned;
use wasm_bindgen::JsValue;
use worker::{Headers, Request, Response, Result};

pub use web_sys::RequestRedirect;

/// A request to `url`: `method`, `headers`, an optional body (a string or a stream), and
/// what to do with a redirect. The caller's `Headers` object is used as it is, not copied.
pub fn request(
    method: &str,
    url: &str,
    headers: &Headers,
    body: Option<&JsValue>,
    redirect: RequestRedirect,
) -> Result<Request> {
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    init.set_headers(headers.0.as_ref());
    init.set_redirect(redirect);
    if let Some(body) = body {
        init.set_body(body);
    }
    Ok(web_sys::Request::new_with_str_and_init(url, &init)?.into())
}

/// A JSON POST to a Durable Object stub's URL.
pub fn json_post(url: &str, body: &str) -> Result<Request> {
    let headers = Headers::new();
    headers.set("Content-Type", "application/json")?;
    request(
        "POST",
        url,
        &headers,
        Some(&JsValue::from_str(body)),
        RequestRedirect::Follow,
    )
}

/// A Durable Object's JSON answer, read as bytes: one serde_json reader for every JSON
/// the worker parses (`Response::json` would read it as text, through a second one).
pub async fn json_answer<T: DeserializeOwned>(mut response: Response) -> Result<T> {
    Ok(serde_json::from_slice(&response.bytes().await?)?)
}
