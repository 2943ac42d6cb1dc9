//! Adapters: the only code that touches `worker` types. Each turns a request, a D1 row or
//! a Durable Object call into core calls and back.

mod app;
mod auth;
mod gate;
mod handlers;
mod http;
mod limiter;
mod presence;
mod provider;
mod proxy;
mod repo;
mod rotation;

use worker::{
    console_error, event, Context, Env, Request, Response, Result, ScheduleContext, ScheduledEvent,
};

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> Result<Response> {
    Ok(app::handle(req, env, ctx).await)
}

/// Cron: re-encrypts credentials still sealed under a key that is no longer active.
#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    let outcome = match app::config(&env) {
        // A deployment still on dev secrets re-seals nothing, as it serves nothing.
        Ok(config) => match config.refuses_service() {
            Some(refusal) => Err(crate::core::error::ApiError::unavailable(
                "config",
                refusal.to_string(),
            )),
            None => rotation::run(&env, &config).await.map(|_| ()),
        },
        Err(e) => Err(crate::core::error::ApiError::unavailable(
            "config",
            e.to_string(),
        )),
    };
    if let Err(e) = outcome {
        console_error!(
            "{}",
            serde_json::json!({"job": "reencrypt_credentials", "error": e.internal_detail})
        );
    }
}
