//! The request pipeline: request id, configuration, routing, error mapping and the log line.

use super::{http, repo::Repo};
use crate::core::{
    config::{Config, ConfigError},
    error::{ApiError, ErrorKind},
    ids,
    log::RequestLog,
    routes::{self, Route, RouteError},
    time::UnixMillis,
};
use std::{cell::OnceCell, rc::Rc};
use worker::{console_log, Date, Env, Request, Response};

thread_local! {
    // Bindings are fixed for an isolate's lifetime, so the parsed config is too.
    static CONFIG: OnceCell<Result<Rc<Config>, ConfigError>> = const { OnceCell::new() };
}

fn config(env: &Env) -> Result<Rc<Config>, ConfigError> {
    CONFIG.with(|cell| {
        cell.get_or_init(|| {
            Config::from_lookup(|name| env.var(name).ok().map(|v| v.to_string())).map(Rc::new)
        })
        .clone()
    })
}

pub fn now() -> UnixMillis {
    Date::now().as_millis() as UnixMillis
}

pub async fn handle(req: Request, env: Env) -> Response {
    let started = now();
    let request_id = ids::new_id(started).to_string();
    let mut log = RequestLog {
        request_id: request_id.clone(),
        method: req.method().to_string(),
        route: "unmatched",
        ..Default::default()
    };

    let response = match dispatch(req, &env, &mut log).await {
        Ok(response) => response,
        Err(e) => {
            if e.kind.status() >= 500 {
                log.error = e.internal_detail.clone();
            }
            http::error(&e)
        }
    };
    let _ = response.headers().set("X-Request-ID", &request_id);
    log.status = response.status_code();
    log.duration_ms = now() - started;
    console_log!("{}", log.to_json_line());
    response
}

async fn dispatch(req: Request, env: &Env, log: &mut RequestLog) -> Result<Response, ApiError> {
    let url = req
        .url()
        .map_err(|_| ApiError::invalid_request("Malformed request URL"))?;
    let path = url.path();
    let config = config(env)
        .map_err(|e| ApiError::unavailable("The service is misconfigured", e.to_string()))?;
    if path.starts_with("/api/") {
        if let Some(refusal) = config.refuses_service() {
            return Err(ApiError::unavailable(
                "The service is misconfigured",
                refusal.to_string(),
            ));
        }
    }
    let matched = match routes::match_route(req.method().as_ref(), path) {
        Ok(m) => m,
        Err(RouteError::NotFound) => return Err(ApiError::not_found("No such endpoint")),
        Err(RouteError::MethodNotAllowed { allow }) => {
            let response = http::error(&ApiError::new(
                ErrorKind::MethodNotAllowed,
                "Method not allowed on this endpoint",
            ));
            let _ = response.headers().set("Allow", &allow.join(", "));
            return Ok(response);
        }
    };
    log.route = matched.template;

    match matched.route {
        Route::Healthz => healthz(env).await,
    }
}

async fn healthz(env: &Env) -> Result<Response, ApiError> {
    let d1 = async { Repo::new(env)?.ping().await }.await;
    match d1 {
        Ok(()) => Ok(http::json(
            200,
            &serde_json::json!({"status": "ok", "d1": "ok"}),
        )),
        Err(e) => Err(ApiError::unavailable(
            "D1 is unavailable",
            format!("healthz: {e}"),
        )),
    }
}
