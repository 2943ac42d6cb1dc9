//! Adapters: the only code that touches `worker` types. Each turns a request, a D1 row or
//! a Durable Object call into core calls and back.

mod app;
mod auth;
mod handlers;
mod http;
mod limiter;
mod repo;

use worker::{event, Context, Env, Request, Response, Result};

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    Ok(app::handle(req, env).await)
}
