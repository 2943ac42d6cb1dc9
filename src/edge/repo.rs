//! The D1 repository: the only place in the service with SQL.

use worker::{D1Database, Env};

pub struct Repo {
    db: D1Database,
}

impl Repo {
    pub fn new(env: &Env) -> worker::Result<Repo> {
        Ok(Repo { db: env.d1("DB")? })
    }

    /// A real read of the schema, so a missing or broken database is seen, not just a socket.
    pub async fn ping(&self) -> worker::Result<()> {
        self.db
            .prepare("SELECT version FROM schema_version LIMIT 1")
            .first::<serde_json::Value>(None)
            .await?
            .map(|_| ())
            .ok_or_else(|| worker::Error::RustError("schema_version is empty".into()))
    }
}
