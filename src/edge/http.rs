//! Turning core values into `worker` responses.

use crate::core::error::{ApiError, ErrorKind};
use serde::Serialize;
use worker::{Headers, Response, ResponseBuilder};

pub fn json<T: Serialize>(status: u16, body: &T) -> Response {
    match serde_json::to_string(body) {
        Ok(text) => with_body(status, text),
        Err(e) => error(&ApiError::internal(format!("serialize response: {e}"))),
    }
}

pub fn error(e: &ApiError) -> Response {
    let response = with_body(e.status(), e.body());
    let headers = response.headers();
    if e.kind == ErrorKind::Unauthorized {
        let _ = headers.set("WWW-Authenticate", "Bearer");
    }
    if let Some(seconds) = e.retry_after {
        let _ = headers.set("Retry-After", &seconds.to_string());
    }
    response
}

pub fn empty(status: u16) -> Response {
    let headers = Headers::new();
    let _ = headers.set("Cache-Control", "no-store");
    ResponseBuilder::new()
        .with_status(status)
        .with_headers(headers)
        .empty()
}

fn with_body(status: u16, body: String) -> Response {
    let headers = Headers::new();
    let _ = headers.set("Content-Type", "application/json");
    let _ = headers.set("Cache-Control", "no-store");
    ResponseBuilder::new()
        .with_status(status)
        .with_headers(headers)
        .fixed(body.into_bytes())
}
