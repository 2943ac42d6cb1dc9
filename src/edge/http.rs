//! Turning core values into `worker` responses.

use crate::core::{
    error::{ApiError, ErrorKind},
    json::{Obj, ToJson},
};
use worker::{Headers, Response, ResponseBuilder};

/// `body` is JSON text (`core/json.rs`).
pub fn json(status: u16, body: String) -> Response {
    with_body(status, body)
}

/// One page of a list: `{"<name>": [...], "next_cursor": <string or null>}`.
pub fn page<T: ToJson>(name: &str, items: &[T], next_cursor: Option<&str>) -> Response {
    let body = Obj::new()
        .list(name, items)
        .opt_str("next_cursor", next_cursor)
        .done();
    json(200, body)
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
