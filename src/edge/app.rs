//! The request pipeline: request id, configuration, routing, error mapping and the log line.

use std::{cell::OnceCell, rc::Rc};

use futures_util::{future::join, StreamExt};
use worker::{console_log, Context, Date, Env, Response};

use super::{
    auth::{self, Presented},
    gate, handlers, http,
    incoming::Incoming,
    proxy,
    repo::Repo,
};
use crate::core::{
    body::{self, FromBody},
    config::{Config, ConfigError},
    error::{ApiError, ErrorKind},
    ids,
    ipgate::Caller,
    log::RequestLog,
    proxy as proxy_rules,
    ratelimit::client_ip_key,
    routes::{self, Route, RouteError},
    time::UnixMillis,
};

thread_local! {
    // Bindings are fixed for an isolate's lifetime, so the parsed config is too.
    static CONFIG: OnceCell<Result<Rc<Config>, ConfigError>> = const { OnceCell::new() };
}

pub fn config(env: &Env) -> Result<Rc<Config>, ConfigError> {
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

/// What a handler works with: the request, parsed config, D1, and this request's log line.
pub struct Ctx<'a> {
    pub req: Incoming,
    pub env: &'a Env,
    /// For work that may finish after the response (`wait_until`).
    pub context: &'a Context,
    pub config: Rc<Config>,
    pub repo: Repo,
    pub now: UnixMillis,
    pub log: &'a mut RequestLog,
    /// What the caller presented, checked without I/O; taken by `auth::authenticate`.
    pub presented: Option<Presented>,
    /// The caller's principal ([`Presented::principal_key`]): its rate limit, and its entry
    /// in this isolate's memory of writers (`auth::known_writer`).
    pub principal_key: Option<String>,
    /// Set once `auth::authenticate` has accepted the caller.
    pub authenticated: bool,
}

impl Ctx<'_> {
    pub fn header(&self, name: &str) -> Option<String> {
        self.req.header(name)
    }

    /// The JSON body as `T`: 415 for another media type, 413 over 16 KiB, 400 otherwise.
    pub async fn json_body<T: FromBody>(&mut self) -> Result<T, ApiError> {
        let length = self.header("Content-Length");
        body::check_headers(self.header("Content-Type").as_deref(), length.as_deref())?;
        body::parse(&self.body_up_to_limit(length.as_deref()).await?)
    }

    /// As [`Ctx::json_body`], for an optional body: none at all is `T::default()`.
    pub async fn optional_json_body<T: FromBody + Default>(&mut self) -> Result<T, ApiError> {
        let empty = !self.req.has_body()
            || (self.header("Content-Length").as_deref() == Some("0")
                && self.header("Content-Type").is_none());
        if empty {
            return Ok(T::default());
        }
        self.json_body().await
    }

    /// The body, of the `Content-Length` already read (if any), but never more than one
    /// chunk past the limit: a body sent without one is refused once it is too large, not
    /// buffered whole first.
    async fn body_up_to_limit(
        &mut self,
        content_length: Option<&str>,
    ) -> Result<Vec<u8>, ApiError> {
        let unreadable = || ApiError::invalid_request("Request body could not be read");
        if !self.req.has_body() {
            return Ok(Vec::new());
        }
        let declared = body::declared_within(
            content_length,
            self.header("Transfer-Encoding").as_deref(),
            body::MAX_BODY_BYTES as u64,
        );
        if declared {
            // The runtime reads no more than the declared length: one read, not a loop.
            return self.req.whole().await.map_err(|_| unreadable());
        }
        let mut stream = self.req.stream().map_err(|_| unreadable())?;
        let mut bytes = Vec::new();
        while bytes.len() <= body::MAX_BODY_BYTES {
            match stream.next().await {
                Some(chunk) => bytes.extend_from_slice(&chunk.map_err(|_| unreadable())?),
                None => break,
            }
        }
        Ok(bytes)
    }
}

pub async fn handle(req: Incoming, env: Env, context: Context) -> Response {
    let started = now();
    let request_id = ids::new_id(started).to_string();
    let mut log = RequestLog {
        request_id: request_id.clone(),
        // As sent: workers-rs reads any method it does not know (QUERY, ...) as GET.
        method: req.method().to_string(),
        route: "unmatched",
        ..Default::default()
    };

    let response = match dispatch(req, &env, &context, &mut log, started).await {
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
    log.wasm_memory_mib = (::core::arch::wasm32::memory_size::<0>() >> 4) as u32; // 64 KiB pages
    console_log!("{}", log.to_json_line());
    response
}

async fn dispatch(
    req: Incoming,
    env: &Env,
    context: &Context,
    log: &mut RequestLog,
    now: UnixMillis,
) -> Result<Response, ApiError> {
    // Owned: the request moves into the handler's context below.
    let path = req.path().to_string();
    let path = path.as_str();
    let config = config(env)
        .map_err(|e| ApiError::unavailable("The service is misconfigured", e.to_string()))?;
    // The proxy's two mounts come first: on the proxy host every path is the provider's.
    let mount = proxy_rules::mount_for(
        proxy_rules::url_host(req.url()).as_deref(),
        config.upstream.proxy_host.as_deref(),
        path,
    );
    // The settings page: static files with their security headers, before any limiter
    // (they cost no D1 or Durable Object call) and outside the API's route table.
    if mount.is_none() && crate::core::settings::is_settings_path(path) {
        log.route = "/settings";
        return super::settings::serve(&req, env, &config).await;
    }
    if path.starts_with("/api/") || mount.is_some() {
        if let Some(refusal) = config.refuses_service() {
            return Err(ApiError::unavailable(
                "The service is misconfigured",
                refusal.to_string(),
            ));
        }
    }
    // The method as sent ([`Incoming::method`]): workers-rs maps unknown methods to GET,
    // which would serve `QUERY /api/v1/teams` as a GET instead of answering 405.
    let matched = match mount {
        Some(_) => None,
        None => match routes::match_route(req.method(), path) {
            Ok(m) => Some(m),
            Err(RouteError::NotFound) => return Err(ApiError::not_found("No such endpoint")),
            Err(RouteError::MethodNotAllowed { allow }) => {
                let response = http::error(&ApiError::new(
                    ErrorKind::MethodNotAllowed,
                    "Method not allowed on this endpoint",
                ));
                let _ = response.headers().set("Allow", &allow.join(", "));
                return Ok(response);
            }
        },
    };
    // The proxy is authenticated and team-scoped, like every credential endpoint.
    let (authenticated, team_scoped) = match &matched {
        Some(m) => (m.route.authenticated(), m.route.team_scoped()),
        None => (true, true),
    };
    log.route = match (&matched, mount) {
        (Some(m), _) => m.template,
        (None, Some(mount)) => mount.route(),
        (None, None) => "unmatched",
    };

    let header = |name: &str| req.header(name);
    let presented = match authenticated {
        true => Some(auth::present(header("Authorization").as_deref(), &config, now).await),
        false => None,
    };
    let team_header = header("X-Team-ID").filter(|_| team_scoped);
    let caller = match &presented {
        None => Caller::Anonymous,
        Some(Presented::Refused(_)) => Caller::Failed,
        Some(Presented::Session(_)) => Caller::Session,
        Some(Presented::ApiKey { .. }) => Caller::Key,
    };
    let key_hash = match &presented {
        Some(Presented::ApiKey { hash }) => Some(hash.clone()),
        _ => None,
    };
    let principal_key = presented
        .as_ref()
        .and_then(|p| p.principal_key(team_header.as_deref()));
    let ip_key = client_ip_key(header("CF-Connecting-IP").as_deref());
    let is_read = matches!(req.method(), "GET" | "HEAD");
    let fail_d1 = config.test_hooks && header("X-Test-Fail-D1").is_some();
    // The limiters' log fields, written by the gate and merged below: the gate may run while
    // the handler holds the request's log.
    let mut gate_log = RequestLog::default();
    let gate_request = gate::Request {
        ip_key: ip_key.clone(),
        caller,
        principal_key: principal_key.clone(),
        key_hash: key_hash.clone(),
        is_write: !is_read,
        anonymous_d1: matches!(&matched, Some(m) if m.route == Route::Healthz),
        fail_limiter: header("X-Test-Fail-Limiter").is_some(),
        now,
        log: &mut gate_log,
    };
    // An API read by a principal its limiter has lately granted: the gate's lease renewal,
    // if it needs one, runs beside the handler's D1 batch (`gate::may_overlap`). The proxy
    // never overlaps: its upstream call must not be made for a request the limit refuses.
    let overlap = is_read && matched.is_some() && gate::may_overlap(&gate_request);
    let admitting = gate::admit(env, &config, gate_request);

    let mut ctx = Ctx {
        req,
        env,
        context,
        config: config.clone(),
        repo: Repo::new(env)?.failing_writes(fail_d1),
        now,
        log,
        presented,
        principal_key,
        authenticated: false,
    };
    let ctx = &mut ctx;
    let (admission, result) = if overlap {
        let (admission, result) = join(admitting, route(ctx, matched.as_ref(), mount)).await;
        (admission, Some(result))
    } else {
        (admitting.await, None)
    };
    ctx.log.do_calls += gate_log.do_calls;
    if gate_log.limiter.is_some() {
        ctx.log.limiter = gate_log.limiter;
        ctx.log.error = gate_log.error;
    }
    let mut admission = match admission {
        Ok(admission) => admission,
        Err(refused) => {
            ctx.log.d1_calls = ctx.repo.calls();
            return Err(refused);
        }
    };
    if let Some(refill) = admission.background.take() {
        ctx.context.wait_until(refill);
    }
    let mut result = match result {
        Some(result) => result,
        None => route(ctx, matched.as_ref(), mount).await,
    };
    // A key D1 refused is a failed authentication, counted for its address; a key that
    // authenticated is reported to its address's object, after the response.
    if let Some(hash) = key_hash {
        if ctx.authenticated {
            if gate::should_report_success(&ip_key, &hash, ctx.now) {
                ctx.context
                    .wait_until(gate::report_success(env.clone(), ip_key, hash));
            }
        } else if matches!(&result, Err(e) if e.kind == ErrorKind::Unauthorized) {
            if let Some(over) = gate::charge_failed_key(env, &ctx.config, &ip_key, ctx.now).await {
                result = Err(over);
            }
        }
    }
    ctx.log.d1_calls = ctx.repo.calls();
    // Every response that passed the limiters says where the caller stands, errors too.
    let response = result.unwrap_or_else(|e| {
        if e.kind.status() >= 500 {
            ctx.log.error = e.internal_detail.clone();
        }
        http::error(&e)
    });
    admission.decorate(&response);
    Ok(response)
}

/// The handler of a matched route, or the proxy.
async fn route(
    ctx: &mut Ctx<'_>,
    matched: Option<&routes::Matched<'_>>,
    mount: Option<proxy_rules::Mount>,
) -> Result<Response, ApiError> {
    use handlers::*;
    match (matched, mount) {
        (None, Some(mount)) => proxy::handle(ctx, mount).await,
        (None, None) => Err(ApiError::not_found("No such endpoint")),
        (Some(matched), _) => match matched.route {
            Route::Healthz => health::healthz(ctx).await,
            Route::OpenApi => openapi::openapi(ctx).await,
            Route::CreateTeam => teams::create_team(ctx).await,
            Route::ListTeams => teams::list_teams(ctx).await,
            Route::GetTeam => teams::get_team(ctx).await,
            Route::RenameTeam => teams::rename_team(ctx).await,
            Route::DeleteTeam => teams::delete_team(ctx).await,
            Route::ListMembers => teams::list_members(ctx).await,
            Route::SetMember => teams::set_member(ctx, matched).await,
            Route::RemoveMember => teams::remove_member(ctx, matched).await,
            Route::CreateApiKey => api_keys::create(ctx).await,
            Route::ListApiKeys => api_keys::list(ctx).await,
            Route::RevokeApiKey => api_keys::revoke(ctx, matched).await,
            Route::ListCredentials => credentials::list(ctx).await,
            Route::PutCredential => credentials::put(ctx, matched).await,
            Route::GetCredential => credentials::get(ctx, matched).await,
            Route::PatchCredential => credentials::patch(ctx, matched).await,
            Route::DeleteCredential => credentials::delete(ctx, matched).await,
            Route::VerifyCredential => credentials::verify(ctx, matched).await,
            Route::ListAuditEvents => audit::list(ctx).await,
            Route::AgentHeartbeat => agents::heartbeat(ctx).await,
            Route::ListAgents => agents::list(ctx).await,
            Route::RouteTask => agents::route(ctx).await,
        },
    }
}
