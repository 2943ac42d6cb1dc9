//! The D1 repository: the only place in the service with SQL. Numbers are bound as JS
//! numbers (f64): D1 rejects the BigInt that an i64 would become.
//!
//! Here: the repository, its statement helpers and the shared row types. By concern:
//! [`teams`] (teams and members), [`api_keys`], [`credentials`] (the sealed keys, their
//! verification, proxy use and guarded writes), [`audit`] and [`rotation`].

mod api_keys;
mod audit;
mod credentials;
mod rotation;
mod row;
mod teams;
pub use crate::core::config::Caps;
pub use credentials::{CallerReads, PutEvents, SealedCredential, WriteGuard};
pub use rotation::Resealed;

use wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, Env};

use row::{all_rows, changed, d1_row, first_row, FromRow};

use crate::core::{
    access::Role,
    api_keys::{scopes_from_text, scopes_to_text, ApiKeyRecord},
    audit::AuditEvent,
    auth::api_key::KeyKind,
    error::ApiError,
    presence::DeviceKey,
    teams::{MemberRecord, TeamRecord, TeamState},
    time::UnixMillis,
};

/// D1 failing is an outage, not a bug: 503, with the cause in the log only.
impl From<worker::Error> for ApiError {
    fn from(e: worker::Error) -> ApiError {
        ApiError::unavailable("The database is unavailable", format!("d1: {e}"))
    }
}

type Result<T> = std::result::Result<T, ApiError>;

fn text(s: &str) -> JsValue {
    JsValue::from_str(s)
}
fn num(n: UnixMillis) -> JsValue {
    JsValue::from_f64(n as f64)
}
fn opt_num(n: Option<UnixMillis>) -> JsValue {
    n.map_or(JsValue::NULL, num)
}
fn opt_text(s: Option<&str>) -> JsValue {
    s.map_or(JsValue::NULL, text)
}
fn millis(n: f64) -> UnixMillis {
    n as UnixMillis
}

fn corrupt(what: &str) -> ApiError {
    ApiError::internal(format!("d1: unexpected stored value in {what}"))
}

fn role(s: &str) -> Result<Role> {
    Role::parse(s).ok_or_else(|| corrupt("team_members.role"))
}

pub struct Repo {
    db: D1Database,
    /// D1 round trips made, for the request's log line.
    calls: std::cell::Cell<u32>,
    /// Test hook (only with TEST_HOOKS=1): a credential change's batch ends in a statement
    /// that fails after the others ran, so the whole transaction must roll back.
    fail_writes: bool,
}

impl Repo {
    pub fn new(env: &Env) -> Result<Repo> {
        Ok(Repo {
            db: env.d1("DB")?,
            calls: std::cell::Cell::new(0),
            fail_writes: false,
        })
    }

    pub fn failing_writes(self, fail_writes: bool) -> Repo {
        Repo {
            fail_writes,
            ..self
        }
    }

    fn stmt(&self, sql: &str, args: &[JsValue]) -> Result<D1PreparedStatement> {
        Ok(self.db.prepare(sql).bind(args)?)
    }

    /// D1 round trips made so far.
    pub fn calls(&self) -> u32 {
        self.calls.get()
    }

    fn counted(&self) {
        self.calls.set(self.calls.get() + 1);
    }

    /// Runs statements as one batch (one transaction): one round trip.
    async fn batch(&self, statements: Vec<D1PreparedStatement>) -> Result<Vec<JsValue>> {
        self.counted();
        row::batch(&self.db, statements).await
    }

    /// Runs one statement: one round trip. Answers how many rows it changed.
    async fn run(&self, statement: D1PreparedStatement) -> Result<u64> {
        self.counted();
        row::run(&statement).await
    }

    async fn first<T: FromRow>(&self, sql: &str, args: &[JsValue]) -> Result<Option<T>> {
        self.counted();
        row::first(&self.stmt(sql, args)?).await
    }

    async fn all<T: FromRow>(&self, sql: &str, args: &[JsValue]) -> Result<Vec<T>> {
        self.counted();
        row::all(&self.stmt(sql, args)?).await
    }

    /// A real read of the schema, so a missing or broken database is seen, not just a socket.
    pub async fn ping(&self) -> Result<()> {
        d1_row! {
            struct Row {
                #[allow(dead_code)]
                version: f64,
            }
        }
        self.first::<Row>("SELECT version FROM schema_version LIMIT 1", &[])
            .await?
            .map(|_| ())
            .ok_or_else(|| ApiError::unavailable("D1 is unavailable", "schema_version is empty"))
    }
}

d1_row! {
    struct MemberRow {
        user_id: String,
        role: String,
        added_at: f64,
    }
}

impl MemberRow {
    fn record(self) -> Result<MemberRecord> {
        Ok(MemberRecord {
            role: role(&self.role)?,
            user_id: self.user_id,
            added_at: millis(self.added_at),
        })
    }
}

const API_KEY_COLUMNS: &str =
    "id, team_id, name, kind, key_preview, scopes, created_at, expires_at, last_used_at, revoked_at";

d1_row! {
    struct ApiKeyRow {
        id: String,
        team_id: String,
        name: String,
        kind: String,
        key_preview: String,
        scopes: String,
        created_at: f64,
        expires_at: Option<f64>,
        last_used_at: Option<f64>,
        revoked_at: Option<f64>,
    }
}

impl ApiKeyRow {
    fn record(self) -> Result<ApiKeyRecord> {
        Ok(ApiKeyRecord {
            kind: KeyKind::parse(&self.kind).ok_or_else(|| corrupt("api_keys.kind"))?,
            scopes: scopes_from_text(&self.scopes),
            id: self.id,
            team_id: self.team_id,
            name: self.name,
            key_preview: self.key_preview,
            created_at: millis(self.created_at),
            expires_at: self.expires_at.map(millis),
            last_used_at: self.last_used_at.map(millis),
            revoked_at: self.revoked_at.map(millis),
        })
    }
}
