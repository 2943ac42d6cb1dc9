//! Adapters: the only code that touches `worker` types. Each turns a request, a D1 row or
//! a Durable Object call into core calls and back.

mod app;
mod auth;
mod gate;
mod handlers;
mod http;
mod incoming;
mod limiter;
mod outbound;
mod presence;
mod provider;
mod proxy;
mod repo;
mod rotation;
mod settings;
mod webcrypto;

use crate::core::json::Obj;
use worker::{
    console_error, event, Context, Env, Response, Result, ScheduleContext, ScheduledEvent,
};

#[event(fetch)]
async fn fetch(req: incoming::Incoming, env: Env, ctx: Context) -> Result<Response> {
    Ok(app::handle(req, env, ctx).await)
}

/// Deletes audit events past `AUDIT_RETENTION_DAYS`, a bounded number per run.
async fn prune_audit(
    env: &Env,
    config: &crate::core::config::Config,
) -> std::result::Result<(), crate::core::error::ApiError> {
    let before = app::now() - i64::from(config.audit_retention_days) * 86_400_000;
    let deleted = repo::Repo::new(env)?
        .prune_audit_events(before, 500, 10)
        .await?;
    worker::console_log!(
        "{}",
        Obj::new()
            .str("job", "audit_retention")
            .int("deleted", deleted as i64)
            .int("retention_days", config.audit_retention_days.into())
            .done()
    );
    Ok(())
}

/// Cron: re-encrypts credentials still sealed under a key that is no longer active, then
/// deletes audit events past their retention.
#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    let outcome = match app::config(&env) {
        // A deployment still on dev secrets re-seals nothing, as it serves nothing.
        Ok(config) => match config.refuses_service() {
            Some(refusal) => Err(crate::core::error::ApiError::unavailable(
                "config",
                refusal.to_string(),
            )),
            None => match rotation::run(&env, &config).await {
                Ok(_) => prune_audit(&env, &config).await,
                Err(e) => Err(e),
            },
        },
        Err(e) => Err(crate::core::error::ApiError::unavailable(
            "config",
            e.to_string(),
        )),
    };
    if let Err(e) = outcome {
        console_error!(
            "{}",
            Obj::new()
                .str("job", "reencrypt_credentials")
                .opt_str("error", e.internal_detail.as_deref())
                .done()
        );
    }
}
