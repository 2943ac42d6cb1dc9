//! The D1 repository: the only place in the service with SQL. Numbers are bound as JS
//! numbers (f64): D1 rejects the BigInt that an i64 would become.

use serde::Deserialize;
use wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, Env};

use crate::core::{
    access::Role,
    api_keys::{scopes_from_text, scopes_to_text, ApiKeyRecord},
    audit::{AuditEvent, PageRequest},
    auth::api_key::KeyKind,
    credentials::{CredentialRecord, Status},
    error::ApiError,
    providers::{self, Provider},
    teams::{MemberRecord, TeamRecord},
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
    /// Test hook (only with TEST_HOOKS=1): a credential change's batch ends in a statement
    /// that fails after the others ran, so the whole transaction must roll back.
    fail_writes: bool,
}

impl Repo {
    pub fn new(env: &Env) -> Result<Repo> {
        Ok(Repo {
            db: env.d1("DB")?,
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

    async fn first<T: for<'de> Deserialize<'de>>(
        &self,
        sql: &str,
        args: &[JsValue],
    ) -> Result<Option<T>> {
        Ok(self.stmt(sql, args)?.first::<T>(None).await?)
    }

    async fn all<T: for<'de> Deserialize<'de>>(
        &self,
        sql: &str,
        args: &[JsValue],
    ) -> Result<Vec<T>> {
        Ok(self.stmt(sql, args)?.all().await?.results::<T>()?)
    }

    /// A real read of the schema, so a missing or broken database is seen, not just a socket.
    pub async fn ping(&self) -> Result<()> {
        #[derive(Deserialize)]
        struct Row {
            #[allow(dead_code)]
            version: f64,
        }
        self.first::<Row>("SELECT version FROM schema_version LIMIT 1", &[])
            .await?
            .map(|_| ())
            .ok_or_else(|| ApiError::unavailable("D1 is unavailable", "schema_version is empty"))
    }

    // ---- teams and members -------------------------------------------------------------

    /// The team and its first owner, in one batch: both or neither.
    pub async fn create_team(&self, team: &TeamRecord, owner: &str) -> Result<()> {
        let now = num(team.created_at);
        self.db
            .batch(vec![
                self.stmt(
                    "INSERT INTO teams (id, name, created_at) VALUES (?1, ?2, ?3)",
                    &[text(&team.id), text(&team.name), now.clone()],
                )?,
                self.stmt(
                    "INSERT INTO team_members (team_id, user_id, role, added_at) VALUES (?1, ?2, 'owner', ?3)",
                    &[text(&team.id), text(owner), now],
                )?,
            ])
            .await?;
        Ok(())
    }

    pub async fn teams_of(&self, user_id: &str) -> Result<Vec<TeamRecord>> {
        #[derive(Deserialize)]
        struct Row {
            id: String,
            name: String,
            role: String,
            created_at: f64,
        }
        let rows: Vec<Row> = self
            .all(
                "SELECT t.id, t.name, m.role, t.created_at FROM team_members m \
                 JOIN teams t ON t.id = m.team_id WHERE m.user_id = ?1 ORDER BY t.created_at, t.id",
                &[text(user_id)],
            )
            .await?;
        rows.into_iter()
            .map(|r| {
                Ok(TeamRecord {
                    role: role(&r.role)?,
                    id: r.id,
                    name: r.name,
                    created_at: millis(r.created_at),
                })
            })
            .collect()
    }

    pub async fn member(&self, team_id: &str, user_id: &str) -> Result<Option<MemberRecord>> {
        let row: Option<MemberRow> = self
            .first(
                "SELECT user_id, role, added_at FROM team_members WHERE team_id = ?1 AND user_id = ?2",
                &[text(team_id), text(user_id)],
            )
            .await?;
        row.map(MemberRow::record).transpose()
    }

    pub async fn members(&self, team_id: &str) -> Result<Vec<MemberRecord>> {
        let rows: Vec<MemberRow> = self
            .all(
                "SELECT user_id, role, added_at FROM team_members WHERE team_id = ?1 ORDER BY added_at, user_id",
                &[text(team_id)],
            )
            .await?;
        rows.into_iter().map(MemberRow::record).collect()
    }

    pub async fn owner_count(&self, team_id: &str) -> Result<usize> {
        #[derive(Deserialize)]
        struct Row {
            n: f64,
        }
        let row: Option<Row> = self
            .first(
                "SELECT COUNT(*) AS n FROM team_members WHERE team_id = ?1 AND role = 'owner'",
                &[text(team_id)],
            )
            .await?;
        Ok(row.map_or(0, |r| r.n as usize))
    }

    /// Adds the member or changes their role, if the rules allow it as the team is at
    /// write time: the caller (`actor_id`) is an owner or admin, only an owner grants
    /// `owner` or changes an owner, and an owner is demoted only while another remains.
    /// Decided inside the one statement, so no concurrent change slips between a check and
    /// the write. `None` means a rule refused.
    pub async fn set_member(
        &self,
        team_id: &str,
        user_id: &str,
        role: Role,
        actor_id: &str,
        now: UnixMillis,
    ) -> Result<Option<MemberRecord>> {
        let (actor, owners) = (actor_role("?5"), OWNER_COUNT);
        let row: Option<MemberRow> = self
            .first(
                &format!(
                    "INSERT INTO team_members (team_id, user_id, role, added_at) \
                     SELECT ?1, ?2, ?3, ?4 WHERE {actor} IN ('owner', 'admin') \
                        AND (?3 <> 'owner' OR {actor} = 'owner') \
                     ON CONFLICT (team_id, user_id) DO UPDATE SET role = excluded.role \
                     WHERE (team_members.role <> 'owner' OR {actor} = 'owner') \
                        AND (team_members.role <> 'owner' OR excluded.role = 'owner' OR {owners} > 1) \
                     RETURNING user_id, role, added_at"
                ),
                &[
                    text(team_id),
                    text(user_id),
                    text(role.as_str()),
                    num(now),
                    text(actor_id),
                ],
            )
            .await?;
        row.map(MemberRow::record).transpose()
    }

    /// Removes the member, under the same rules as `set_member`, checked in the statement.
    /// `false` when nothing was removed: no such member, or a rule refused.
    pub async fn remove_member(
        &self,
        team_id: &str,
        user_id: &str,
        actor_id: &str,
    ) -> Result<bool> {
        #[derive(Deserialize)]
        struct Row {
            #[allow(dead_code)]
            user_id: String,
        }
        let (actor, owners) = (actor_role("?3"), OWNER_COUNT);
        let row: Option<Row> = self
            .first(
                &format!(
                    "DELETE FROM team_members WHERE team_id = ?1 AND user_id = ?2 \
                     AND {actor} IN ('owner', 'admin') \
                     AND (role <> 'owner' OR {actor} = 'owner') \
                     AND (role <> 'owner' OR {owners} > 1) \
                     RETURNING user_id"
                ),
                &[text(team_id), text(user_id), text(actor_id)],
            )
            .await?;
        Ok(row.is_some())
    }

    // ---- API keys ----------------------------------------------------------------------

    pub async fn insert_api_key(
        &self,
        record: &ApiKeyRecord,
        key_hash: &str,
        created_by: &str,
    ) -> Result<()> {
        self.stmt(
            "INSERT INTO api_keys (id, team_id, name, kind, key_hash, key_preview, scopes, created_by, created_at, expires_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            &[
                text(&record.id),
                text(&record.team_id),
                text(&record.name),
                text(record.kind.as_str()),
                text(key_hash),
                text(&record.key_preview),
                text(&scopes_to_text(&record.scopes)),
                text(created_by),
                num(record.created_at),
                opt_num(record.expires_at),
            ],
        )?
        .run()
        .await?;
        Ok(())
    }

    pub async fn api_keys(&self, team_id: &str) -> Result<Vec<ApiKeyRecord>> {
        let rows: Vec<ApiKeyRow> = self
            .all(
                &format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE team_id = ?1 ORDER BY created_at DESC, id DESC"),
                &[text(team_id)],
            )
            .await?;
        rows.into_iter().map(ApiKeyRow::record).collect()
    }

    pub async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>> {
        let row: Option<ApiKeyRow> = self
            .first(
                &format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE key_hash = ?1"),
                &[text(key_hash)],
            )
            .await?;
        row.map(ApiKeyRow::record).transpose()
    }

    /// Revokes a key of this team; revoking again keeps the first revocation time.
    pub async fn revoke_api_key(
        &self,
        team_id: &str,
        id: &str,
        now: UnixMillis,
    ) -> Result<Option<ApiKeyRecord>> {
        let row: Option<ApiKeyRow> = self
            .first(
                &format!(
                    "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?3) WHERE team_id = ?1 AND id = ?2 \
                     RETURNING {API_KEY_COLUMNS}"
                ),
                &[text(team_id), text(id), num(now)],
            )
            .await?;
        row.map(ApiKeyRow::record).transpose()
    }

    /// Records use, at most once per resolution window whatever the concurrency.
    pub async fn touch_api_key(&self, id: &str, now: UnixMillis, resolution_ms: i64) -> Result<()> {
        self.stmt(
            "UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at <= ?3)",
            &[text(id), num(now), num(now - resolution_ms)],
        )?
        .run()
        .await?;
        Ok(())
    }
}

// ---- credentials -----------------------------------------------------------------------
impl Repo {
    /// The API key with this hash and its team's credential for `provider`, in one D1
    /// round trip. The credential is found through the key's own row, so it can only ever
    /// be that key's team's; the caller still decides whether the key may act at all.
    pub async fn api_key_and_credential(
        &self,
        key_hash: &str,
        provider: &Provider,
    ) -> Result<(Option<ApiKeyRecord>, Option<CredentialRecord>)> {
        let key = self.stmt(
            &format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE key_hash = ?1"),
            &[text(key_hash)],
        )?;
        let credential = self.stmt(
            &format!(
                "SELECT {CREDENTIAL_COLUMNS} FROM credentials \
                 WHERE team_id = (SELECT team_id FROM api_keys WHERE key_hash = ?1) AND provider = ?2"
            ),
            &[text(key_hash), text(provider.name)],
        )?;
        self.caller_and_credential(key, credential, ApiKeyRow::record)
            .await
    }

    /// The caller's membership in `team_id` and that team's credential for `provider`, in
    /// one D1 round trip.
    pub async fn member_and_credential(
        &self,
        team_id: &str,
        user_id: &str,
        provider: &Provider,
    ) -> Result<(Option<MemberRecord>, Option<CredentialRecord>)> {
        let member = self.stmt(
            "SELECT user_id, role, added_at FROM team_members WHERE team_id = ?1 AND user_id = ?2",
            &[text(team_id), text(user_id)],
        )?;
        let credential = self.stmt(
            &format!(
                "SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE team_id = ?1 AND provider = ?2"
            ),
            &[text(team_id), text(provider.name)],
        )?;
        self.caller_and_credential(member, credential, MemberRow::record)
            .await
    }

    /// Runs the caller's read and the credential's read as one D1 batch: one round trip.
    async fn caller_and_credential<Row: for<'de> Deserialize<'de>, Caller>(
        &self,
        caller: D1PreparedStatement,
        credential: D1PreparedStatement,
        record: fn(Row) -> Result<Caller>,
    ) -> Result<(Option<Caller>, Option<CredentialRecord>)> {
        let results = self.db.batch(vec![caller, credential]).await?;
        let caller = first_row::<Row>(&results, 0)?.map(record).transpose()?;
        let credential = first_row::<CredentialRow>(&results, 1)?
            .map(CredentialRow::record)
            .transpose()?;
        Ok((caller, credential))
    }

    pub async fn credential(
        &self,
        team_id: &str,
        provider: &Provider,
    ) -> Result<Option<CredentialRecord>> {
        let row: Option<CredentialRow> = self
            .first(
                &format!("SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE team_id = ?1 AND provider = ?2"),
                &[text(team_id), text(provider.name)],
            )
            .await?;
        row.map(CredentialRow::record).transpose()
    }

    pub async fn credentials(&self, team_id: &str) -> Result<Vec<CredentialRecord>> {
        let rows: Vec<CredentialRow> = self
            .all(
                &format!("SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE team_id = ?1 ORDER BY provider"),
                &[text(team_id)],
            )
            .await?;
        // A row of a provider this build no longer knows is skipped, not an error.
        Ok(rows.into_iter().filter_map(|r| r.record().ok()).collect())
    }

    /// Sets or replaces the sealed key. With `expected`, only while the row is still at that
    /// version. Returns `None` when that condition failed (nothing written, no audit).
    #[allow(clippy::too_many_arguments)]
    pub async fn put_credential(
        &self,
        team_id: &str,
        provider: &Provider,
        sealed: &str,
        key_id: &str,
        key_preview: &str,
        cloud_fallback: bool,
        now: UnixMillis,
        expected: Option<i64>,
        audit: &AuditEvent,
    ) -> Result<Option<CredentialRecord>> {
        let change = self.stmt(
            &format!(
                "INSERT INTO credentials (team_id, provider, status, cloud_fallback, ciphertext, key_id, key_preview, created_at, updated_at, version) \
                 VALUES (?1, ?2, 'active', ?3, ?4, ?5, ?6, ?7, ?7, 1) \
                 ON CONFLICT (team_id, provider) DO UPDATE SET status = 'active', cloud_fallback = excluded.cloud_fallback, \
                   ciphertext = excluded.ciphertext, key_id = excluded.key_id, key_preview = excluded.key_preview, \
                   updated_at = excluded.updated_at, version = credentials.version + 1 \
                 WHERE ?8 IS NULL OR credentials.version = ?8 \
                 RETURNING {CREDENTIAL_COLUMNS}"
            ),
            &[
                text(team_id),
                text(provider.name),
                JsValue::from_f64(cloud_fallback as u8 as f64),
                text(sealed),
                text(key_id),
                text(key_preview),
                num(now),
                opt_num(expected),
            ],
        )?;
        self.change_with_audit(change, audit, expected).await
    }

    /// Turns cloud fallback on or off, if the row is still at `expected` and, to turn it on,
    /// still active.
    pub async fn set_cloud_fallback(
        &self,
        team_id: &str,
        provider: &Provider,
        cloud_fallback: bool,
        now: UnixMillis,
        expected: i64,
        audit: &AuditEvent,
    ) -> Result<Option<CredentialRecord>> {
        let change = self.stmt(
            &format!(
                "UPDATE credentials SET cloud_fallback = ?3, updated_at = ?4, version = version + 1 \
                 WHERE team_id = ?1 AND provider = ?2 AND version = ?5 AND (?3 = 0 OR status = 'active') \
                 RETURNING {CREDENTIAL_COLUMNS}"
            ),
            &[
                text(team_id),
                text(provider.name),
                JsValue::from_f64(cloud_fallback as u8 as f64),
                num(now),
                num(expected),
            ],
        )?;
        self.change_with_audit(change, audit, Some(expected)).await
    }

    /// Revokes: the ciphertext is destroyed, fallback turned off; the row stays for status.
    pub async fn revoke_credential(
        &self,
        team_id: &str,
        provider: &Provider,
        now: UnixMillis,
        expected: i64,
        audit: &AuditEvent,
    ) -> Result<Option<CredentialRecord>> {
        let change = self.stmt(
            &format!(
                "UPDATE credentials SET status = 'revoked', cloud_fallback = 0, ciphertext = NULL, key_id = NULL, \
                   updated_at = ?3, version = version + 1 \
                 WHERE team_id = ?1 AND provider = ?2 AND version = ?4 \
                 RETURNING {CREDENTIAL_COLUMNS}"
            ),
            &[text(team_id), text(provider.name), num(now), num(expected)],
        )?;
        self.change_with_audit(change, audit, Some(expected)).await
    }

    /// The change and its audit event in one D1 batch (one transaction): both or neither.
    /// The audit insert carries the change's own version condition, so a change that finds
    /// the row moved on writes no event either.
    async fn change_with_audit(
        &self,
        change: D1PreparedStatement,
        audit: &AuditEvent,
        expected: Option<i64>,
    ) -> Result<Option<CredentialRecord>> {
        let record = self.stmt(
            "INSERT INTO audit_events (id, team_id, actor_kind, actor_id, action, provider, created_at, request_id) \
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8 \
             WHERE ?9 IS NULL OR EXISTS (SELECT 1 FROM credentials WHERE team_id = ?2 AND provider = ?6 AND version = ?9)",
            &[
                text(&audit.id),
                text(&audit.team_id),
                text(&audit.actor_kind),
                text(&audit.actor_id),
                text(&audit.action),
                opt_text(audit.provider.as_deref()),
                num(audit.created_at),
                text(&audit.request_id),
                opt_num(expected),
            ],
        )?;
        let mut statements = vec![record, change];
        if self.fail_writes {
            // A NOT NULL violation, raised only after both writes above have run.
            statements.push(self.stmt(
                "INSERT INTO audit_events (id, team_id, actor_kind, actor_id, action, created_at, request_id) \
                 VALUES (?1, NULL, '', '', '', 0, '')",
                &[text(&audit.id)],
            )?);
        }
        let results = self.db.batch(statements).await?;
        let rows: Vec<CredentialRow> = match results.get(1) {
            Some(result) => result.results()?,
            None => Vec::new(),
        };
        rows.into_iter()
            .next()
            .map(CredentialRow::record)
            .transpose()
    }

    pub async fn audit_events(&self, team_id: &str, page: &PageRequest) -> Result<Vec<AuditEvent>> {
        #[derive(Deserialize)]
        struct Row {
            id: String,
            team_id: String,
            actor_kind: String,
            actor_id: String,
            action: String,
            provider: Option<String>,
            created_at: f64,
            request_id: String,
        }
        let rows: Vec<Row> = self
            .all(
                "SELECT id, team_id, actor_kind, actor_id, action, provider, created_at, request_id \
                 FROM audit_events WHERE team_id = ?1 AND (?2 IS NULL OR id < ?2) ORDER BY id DESC LIMIT ?3",
                &[text(team_id), opt_text(page.before.as_deref()), num(page.limit as i64 + 1)],
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| AuditEvent {
                id: r.id,
                team_id: r.team_id,
                actor_kind: r.actor_kind,
                actor_id: r.actor_id,
                action: r.action,
                provider: r.provider,
                created_at: millis(r.created_at),
                request_id: r.request_id,
            })
            .collect())
    }

    // ---- key rotation ------------------------------------------------------------------

    /// Sealed rows not under `active_key_id`, in key order after `after`.
    pub async fn rows_to_reencrypt(
        &self,
        active_key_id: &str,
        after: Option<&SealedRow>,
        limit: usize,
    ) -> Result<Vec<SealedRow>> {
        self.all(
            "SELECT team_id, provider, ciphertext FROM credentials \
             WHERE ciphertext IS NOT NULL AND key_id <> ?1 AND (team_id, provider) > (?2, ?3) \
             ORDER BY team_id, provider LIMIT ?4",
            &[
                text(active_key_id),
                text(after.map_or("", |r| r.team_id.as_str())),
                text(after.map_or("", |r| r.provider.as_str())),
                num(limit as i64),
            ],
        )
        .await
    }

    /// Swaps in each re-sealed blob only if its row still holds the blob it was made from,
    /// so a concurrent PUT or DELETE always wins. One D1 call for the whole batch (a cron
    /// run has a subrequest budget); each row's change and audit event stand or fall
    /// together. The version is unchanged: the credential itself did not change, so
    /// clients' ETags stay valid. Returns, per row, whether it was replaced.
    pub async fn replace_ciphertexts(&self, batch: &[Resealed<'_>]) -> Result<Vec<bool>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut statements = Vec::with_capacity(batch.len() * 2);
        for Resealed {
            row,
            sealed,
            key_id,
            audit,
        } in batch
        {
            statements.push(self.stmt(
                "INSERT INTO audit_events (id, team_id, actor_kind, actor_id, action, provider, created_at, request_id) \
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8 \
                 WHERE EXISTS (SELECT 1 FROM credentials WHERE team_id = ?2 AND provider = ?6 AND ciphertext = ?9)",
                &[
                    text(&audit.id),
                    text(&audit.team_id),
                    text(&audit.actor_kind),
                    text(&audit.actor_id),
                    text(&audit.action),
                    text(&row.provider),
                    num(audit.created_at),
                    text(&audit.request_id),
                    text(&row.ciphertext),
                ],
            )?);
            statements.push(self.stmt(
                "UPDATE credentials SET ciphertext = ?3, key_id = ?4 WHERE team_id = ?1 AND provider = ?2 AND ciphertext = ?5",
                &[text(&row.team_id), text(&row.provider), text(sealed), text(key_id), text(&row.ciphertext)],
            )?);
        }
        let results = self.db.batch(statements).await?;
        Ok((0..batch.len())
            .map(|i| {
                results
                    .get(2 * i + 1)
                    .and_then(|r| r.meta().ok().flatten())
                    .and_then(|m| m.changes)
                    .unwrap_or(0)
                    > 0
            })
            .collect())
    }
}

/// A row re-sealed under the active key, with the audit event its replacement writes.
pub struct Resealed<'a> {
    pub row: &'a SealedRow,
    pub sealed: String,
    pub key_id: &'a str,
    pub audit: AuditEvent,
}

/// The first row of the `index`th result of a batch.
fn first_row<T: for<'de> Deserialize<'de>>(
    results: &[worker::D1Result],
    index: usize,
) -> Result<Option<T>> {
    match results.get(index) {
        Some(result) => Ok(result.results::<T>()?.into_iter().next()),
        None => Ok(None),
    }
}

#[derive(Debug, Deserialize)]
pub struct SealedRow {
    pub team_id: String,
    pub provider: String,
    pub ciphertext: String,
}

/// Team ?1's owner count, read inside a member statement.
const OWNER_COUNT: &str =
    "(SELECT COUNT(*) FROM team_members WHERE team_id = ?1 AND role = 'owner')";

/// The caller's role in team ?1 (NULL when not a member), read inside a member statement;
/// `param` is the statement parameter that holds the caller's user id.
fn actor_role(param: &str) -> String {
    format!("(SELECT role FROM team_members WHERE team_id = ?1 AND user_id = {param})")
}

const CREDENTIAL_COLUMNS: &str =
    "provider, status, cloud_fallback, created_at, updated_at, key_preview, version";

#[derive(Deserialize)]
struct CredentialRow {
    provider: String,
    status: String,
    cloud_fallback: f64,
    created_at: f64,
    updated_at: f64,
    key_preview: String,
    version: f64,
}

impl CredentialRow {
    fn record(self) -> Result<CredentialRecord> {
        Ok(CredentialRecord {
            provider: providers::by_name(&self.provider)
                .ok_or_else(|| corrupt("credentials.provider"))?,
            status: Status::parse(&self.status).ok_or_else(|| corrupt("credentials.status"))?,
            cloud_fallback: self.cloud_fallback != 0.0,
            created_at: millis(self.created_at),
            updated_at: millis(self.updated_at),
            key_preview: self.key_preview,
            version: self.version as i64,
        })
    }
}

#[derive(Deserialize)]
struct MemberRow {
    user_id: String,
    role: String,
    added_at: f64,
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

#[derive(Deserialize)]
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
