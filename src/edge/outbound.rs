//! Subrequests built on the runtime's own `RequestInit`. worker's `RequestInit` turns its
//! `cf` properties into JS through serde_wasm_bindgen, which links that serializer and the
//! image-resizing types into the wasm although no request of ours sets a `cf` property.

use serde_json::Value;
use wasm_bindgen::JsValue;
use worker::{Env, Headers, Request, Response, Result};

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

/// `message` (JSON text, `core/messages.rs`) as a POST to the Durable Object `name` of
/// `binding`; an answer other than 200 is an error that names the binding (its body is not
/// read).
pub async fn object_post(binding: &str, env: &Env, name: &str, message: &str) -> Result<Response> {
    let stub = env.durable_object(binding)?.get_by_name(name)?;
    let headers = Headers::new();
    headers.set("Content-Type", "application/json")?;
    let body = JsValue::from_str(message);
    let request = request(
        "POST",
        "https://object/",
        &headers,
        Some(&body),
        RequestRedirect::Follow,
    )?;
    let response = stub.fetch_with_request(request).await?;
    if response.status_code() != 200 {
        return Err(worker::Error::RustError(format!(
            "{binding} answered {}",
            response.status_code()
        )));
    }
    Ok(response)
}

/// A Durable Object's answer: 200 with JSON text.
pub fn json_reply(json: String) -> Result<Response> {
    let response = Response::ok(json)?;
    response.headers().set("Content-Type", "application/json")?;
    Ok(response)
}

/// A Durable Object's JSON answer, read as text into a `Value` (one serde_json reader for
/// every JSON the worker parses) and from there by `read`. The runtime reads the body in
/// one call: worker's `Response::bytes` reads a stream chunk by chunk through a reader
/// whose release alone was 5% of the CPU of a GET under load that renewed its lease.
pub async fn answer<T>(response: Response, read: impl FnOnce(&Value) -> Option<T>) -> Result<T> {
    let raw: web_sys::Response = response.into();
    let text = worker::wasm_bindgen_futures::JsFuture::from(raw.text()?).await?;
    crate::core::json::parse(text.as_string().unwrap_or_default().as_bytes())
        .as_ref()
        .and_then(read)
        .ok_or_else(|| worker::Error::RustError("unreadable Durable Object answer".into()))
}
