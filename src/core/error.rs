//! The contract's single error shape: `{"error": {"type": ..., "message": ...}}`.

use std::borrow::Cow;

use super::json::Obj;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    PreconditionFailed,
    PayloadTooLarge,
    UnsupportedMediaType,
    ProviderKeyRejected,
    RateLimited,
    Internal,
    BadGateway,
    ServiceUnavailable,
    NoComputeAvailable,
    GatewayTimeout,
}

impl ErrorKind {
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::InvalidRequest => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::Conflict => 409,
            ErrorKind::PreconditionFailed => 412,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::UnsupportedMediaType => 415,
            ErrorKind::ProviderKeyRejected => 422,
            ErrorKind::RateLimited => 429,
            ErrorKind::Internal => 500,
            ErrorKind::BadGateway => 502,
            ErrorKind::ServiceUnavailable => 503,
            ErrorKind::NoComputeAvailable => 503,
            ErrorKind::GatewayTimeout => 504,
        }
    }

    pub fn type_name(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::NotFound => "not_found",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::Conflict => "conflict",
            ErrorKind::PreconditionFailed => "precondition_failed",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::UnsupportedMediaType => "unsupported_media_type",
            ErrorKind::ProviderKeyRejected => "provider_key_rejected",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Internal => "internal_error",
            ErrorKind::BadGateway => "bad_gateway",
            ErrorKind::ServiceUnavailable => "service_unavailable",
            ErrorKind::NoComputeAvailable => "no_compute_available",
            ErrorKind::GatewayTimeout => "gateway_timeout",
        }
    }
}

/// An error a client may see. `message` is written for a person and never carries
/// internals: the detail of a 500 or 503 goes to the log through `internal_detail`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: Cow<'static, str>,
    /// Whole seconds, sent as `Retry-After` (429 and 503).
    pub retry_after: Option<u32>,
    /// Logged, never sent.
    pub internal_detail: Option<String>,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        ApiError {
            kind,
            message: message.into(),
            retry_after: None,
            internal_detail: None,
        }
    }

    pub fn invalid_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::InvalidRequest, message)
    }
    pub fn unauthorized(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Unauthorized, message)
    }
    pub fn forbidden(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Forbidden, message)
    }
    pub fn not_found(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    pub fn conflict(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }

    /// A 500 whose body says nothing about the cause.
    pub fn internal(detail: impl Into<String>) -> Self {
        ApiError {
            internal_detail: Some(detail.into()),
            ..Self::new(ErrorKind::Internal, "Internal server error")
        }
    }

    /// A 503: a dependency (D1, a limiter, configuration) is not usable right now.
    pub fn unavailable(message: impl Into<Cow<'static, str>>, detail: impl Into<String>) -> Self {
        ApiError {
            internal_detail: Some(detail.into()),
            retry_after: Some(1),
            ..Self::new(ErrorKind::ServiceUnavailable, message)
        }
    }

    pub fn with_retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    pub fn status(&self) -> u16 {
        self.kind.status()
    }

    pub fn body(&self) -> String {
        let error = Obj::new()
            .str("type", self.kind.type_name())
            .str("message", &self.message)
            .done();
        Obj::new().raw("error", &error).done()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_contract_shape() {
        let e = ApiError::unauthorized("Invalid token");
        let v: serde_json::Value = serde_json::from_str(&e.body()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error": {"type": "unauthorized", "message": "Invalid token"}})
        );
        assert_eq!(e.status(), 401);
    }

    #[test]
    fn internal_errors_hide_their_detail() {
        let e = ApiError::internal("D1_ERROR: no such table: secrets");
        assert_eq!(e.status(), 500);
        assert!(!e.body().contains("D1_ERROR"));
        assert!(e.body().contains("internal_error"));
    }

    #[test]
    fn every_kind_maps_to_the_contract_table() {
        let table = [
            (ErrorKind::InvalidRequest, "invalid_request", 400),
            (ErrorKind::Unauthorized, "unauthorized", 401),
            (ErrorKind::Forbidden, "forbidden", 403),
            (ErrorKind::NotFound, "not_found", 404),
            (ErrorKind::MethodNotAllowed, "method_not_allowed", 405),
            (ErrorKind::Conflict, "conflict", 409),
            (ErrorKind::PreconditionFailed, "precondition_failed", 412),
            (ErrorKind::PayloadTooLarge, "payload_too_large", 413),
            (
                ErrorKind::UnsupportedMediaType,
                "unsupported_media_type",
                415,
            ),
            (ErrorKind::ProviderKeyRejected, "provider_key_rejected", 422),
            (ErrorKind::RateLimited, "rate_limited", 429),
            (ErrorKind::Internal, "internal_error", 500),
            (ErrorKind::BadGateway, "bad_gateway", 502),
            (ErrorKind::ServiceUnavailable, "service_unavailable", 503),
            (ErrorKind::NoComputeAvailable, "no_compute_available", 503),
            (ErrorKind::GatewayTimeout, "gateway_timeout", 504),
        ];
        for (kind, name, status) in table {
            assert_eq!((kind.type_name(), kind.status()), (name, status));
        }
    }

    #[test]
    fn retry_after_is_at_least_one_second() {
        let e = ApiError::unavailable("x", "y").with_retry_after(0);
        assert_eq!(e.retry_after, Some(1));
    }
}
