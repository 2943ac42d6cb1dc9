//! The D1 repository: the only place in the service with SQL. Numbers are bound as JS
//! numbers (f64): D1 rejects the BigInt that an i64 would become.
//!
//! Teams, members and API keys are here; credentials, their audit events and key rotation
//! in [`credentials`].

mod credentials;
pub use crate::core::config::Caps;
pub use credentials::{Resealed, SealedCredential, WriteGuard};

use serde::Deserialize;
use wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, Env};

use crate::core::{
    access::Role,
    api_keys::{scopes_from_text, scopes_to_text, ApiKeyRecord},
    audit::AuditEvent,
    auth::api_key::KeyKind,
    error::ApiError,
    presence::DeviceKey,
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
    async fn batch(&self, statements: Vec<D1PreparedStatement>) -> Result<Vec<worker::D1Result>> {
        self.counted();
        Ok(self.db.batch(statements).await?)
    }

    async fn run(&self, statement: D1PreparedStatement) -> Result<()> {
        self.counted();
        statement.run().await?;
        Ok(())
    }

    async fn first<T: for<'de> Deserialize<'de>>(
        &self,
        sql: &str,
        args: &[JsValue],
    ) -> Result<Option<T>> {
        self.counted();
        Ok(self.stmt(sql, args)?.first::<T>(None).await?)
    }

    async fn all<T: for<'de> Deserialize<'de>>(
        &self,
        sql: &str,
        args: &[JsValue],
    ) -> Result<Vec<T>> {
        self.counted();
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

    /// The team, its first owner and the `team.created` event, in one batch: all or
    /// nothing, and nothing when the owner already belongs to `max_teams` teams. `false`
    /// when the cap refused.
    pub async fn create_team(
        &self,
        team: &TeamRecord,
        owner: &str,
        max_teams: u32,
        audit: &AuditEvent,
    ) -> Result<bool> {
        let now = num(team.created_at);
        let cap = num(max_teams as i64);
        let under_cap = "(SELECT COUNT(*) FROM team_members WHERE user_id = ?2) < ?4";
        let results = self
            .batch(vec![
                self.stmt(
                    &format!(
                        "INSERT INTO teams (id, name, created_at) SELECT ?1, ?3, ?5 WHERE {under_cap}"
                    ),
                    &[text(&team.id), text(owner), text(&team.name), cap.clone(), now.clone()],
                )?,
                self.stmt(
                    &format!(
                        "INSERT INTO team_members (team_id, user_id, role, added_at) \
                         SELECT ?1, ?2, 'owner', ?3 WHERE EXISTS (SELECT 1 FROM teams WHERE id = ?1) \
                           AND {under_cap}"
                    ),
                    &[text(&team.id), text(owner), now, cap],
                )?,
                self.audit_insert(audit, "changes() > 0", None, None)?,
            ])
            .await?;
        Ok(changed(&results, 0))
    }

    /// The user's teams, oldest first (UUIDv7 ids follow creation time), `limit` of them
    /// after the team id `after`.
    pub async fn teams_of(
        &self,
        user_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<TeamRecord>> {
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
                 JOIN teams t ON t.id = m.team_id WHERE m.user_id = ?1 AND (?2 IS NULL OR t.id > ?2) \
                 ORDER BY t.id LIMIT ?3",
                &[text(user_id), opt_text(after), num(limit as i64)],
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

    /// The team's members by (added_at, user_id), `limit` of them after `after`.
    pub async fn members(
        &self,
        team_id: &str,
        after: Option<(UnixMillis, &str)>,
        limit: usize,
    ) -> Result<Vec<MemberRecord>> {
        let rows: Vec<MemberRow> = self
            .all(
                "SELECT user_id, role, added_at FROM team_members WHERE team_id = ?1 \
                 AND (?2 IS NULL OR (added_at, user_id) > (?2, ?3)) \
                 ORDER BY added_at, user_id LIMIT ?4",
                &[
                    text(team_id),
                    opt_num(after.map(|(at, _)| at)),
                    opt_text(after.map(|(_, user)| user)),
                    num(limit as i64),
                ],
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
    #[allow(clippy::too_many_arguments)]
    pub async fn set_member(
        &self,
        team_id: &str,
        user_id: &str,
        role: Role,
        actor_id: &str,
        now: UnixMillis,
        caps: &Caps,
        audit: &AuditEvent,
    ) -> Result<Option<MemberRecord>> {
        let (actor, owners) = (actor_role("?5"), OWNER_COUNT);
        let change = self.stmt(
            &format!(
                "INSERT INTO team_members (team_id, user_id, role, added_at) \
                 SELECT ?1, ?2, ?3, ?4 WHERE {actor} IN ('owner', 'admin') \
                    AND (?3 <> 'owner' OR {actor} = 'owner') \
                    AND (((SELECT COUNT(*) FROM team_members WHERE user_id = ?2) < ?6 \
                          AND (SELECT COUNT(*) FROM team_members WHERE team_id = ?1) < ?7) \
                         OR EXISTS (SELECT 1 FROM team_members WHERE team_id = ?1 AND user_id = ?2)) \
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
                num(caps.teams_per_user as i64),
                num(caps.members_per_team as i64),
            ],
        )?;
        // Written only if the statement above changed a row; a row whose `added_at` is this
        // request's time was added by it, any other had its role set.
        let event = self.stmt(
            "INSERT INTO audit_events (id, team_id, actor_kind, actor_id, action, created_at, request_id, subject) \
             SELECT ?1, ?2, ?3, ?4, \
               CASE WHEN (SELECT added_at FROM team_members WHERE team_id = ?2 AND user_id = ?7) = ?5 \
                 THEN 'member.added' ELSE 'member.role_changed' END, \
               ?5, ?6, ?7 WHERE changes() > 0",
            &[
                text(&audit.id),
                text(&audit.team_id),
                text(&audit.actor_kind),
                text(&audit.actor_id),
                num(audit.created_at),
                text(&audit.request_id),
                text(user_id),
            ],
        )?;
        let results = self.batch(vec![change, event]).await?;
        first_row::<MemberRow>(&results, 0)?
            .map(MemberRow::record)
            .transpose()
    }

    /// How many teams the user belongs to.
    pub async fn team_count(&self, user_id: &str) -> Result<u32> {
        #[derive(Deserialize)]
        struct Row {
            n: f64,
        }
        let row: Option<Row> = self
            .first(
                "SELECT COUNT(*) AS n FROM team_members WHERE user_id = ?1",
                &[text(user_id)],
            )
            .await?;
        Ok(row.map_or(0, |r| r.n as u32))
    }

    /// Removes the member, under the same rules as `set_member`, checked in the statement.
    /// `false` when nothing was removed: no such member, or a rule refused.
    pub async fn remove_member(
        &self,
        team_id: &str,
        user_id: &str,
        actor_id: &str,
        audit: &AuditEvent,
    ) -> Result<bool> {
        let (actor, owners) = (actor_role("?3"), OWNER_COUNT);
        let results = self
            .batch(vec![
                self.stmt(
                    &format!(
                        "DELETE FROM team_members WHERE team_id = ?1 AND user_id = ?2 \
                         AND {actor} IN ('owner', 'admin') \
                         AND (role <> 'owner' OR {actor} = 'owner') \
                         AND (role <> 'owner' OR {owners} > 1)"
                    ),
                    &[text(team_id), text(user_id), text(actor_id)],
                )?,
                self.audit_insert(audit, "changes() > 0", None, None)?,
            ])
            .await?;
        Ok(changed(&results, 0))
    }

    // ---- API keys ----------------------------------------------------------------------

    /// The key and its `api_key.created` event, in one batch, unless the team already has
    /// `max_active` usable keys. `false` when the cap refused.
    pub async fn insert_api_key(
        &self,
        record: &ApiKeyRecord,
        key_hash: &str,
        created_by: &str,
        max_active: u32,
        audit: &AuditEvent,
    ) -> Result<bool> {
        let results = self.batch(vec![
            self.stmt(
                "INSERT INTO api_keys (id, team_id, name, kind, key_hash, key_preview, scopes, created_by, created_at, expires_at) \
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10 \
                 WHERE (SELECT COUNT(*) FROM api_keys WHERE team_id = ?2 AND revoked_at IS NULL \
                        AND (expires_at IS NULL OR expires_at > ?9)) < ?11",
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
                    num(max_active as i64),
                ],
            )?,
            self.audit_insert(audit, "changes() > 0", None, None)?,
        ])
        .await?;
        Ok(changed(&results, 0))
    }

    /// The team's members and its usable keys, to name the cap a refused change hit.
    pub async fn team_size(&self, team_id: &str, now: UnixMillis) -> Result<(u32, u32)> {
        #[derive(Deserialize)]
        struct Row {
            members: f64,
            keys: f64,
        }
        let row: Option<Row> = self
            .first(
                "SELECT (SELECT COUNT(*) FROM team_members WHERE team_id = ?1) AS members, \
                 (SELECT COUNT(*) FROM api_keys WHERE team_id = ?1 AND revoked_at IS NULL \
                   AND (expires_at IS NULL OR expires_at > ?2)) AS keys",
                &[text(team_id), num(now)],
            )
            .await?;
        Ok(row.map_or((0, 0), |r| (r.members as u32, r.keys as u32)))
    }

    /// The team's keys, newest first (UUIDv7 ids), `limit` of them after the id `after`.
    pub async fn api_keys(
        &self,
        team_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ApiKeyRecord>> {
        let rows: Vec<ApiKeyRow> = self
            .all(
                &format!(
                    "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE team_id = ?1 AND (?2 IS NULL OR id < ?2) \
                     ORDER BY id DESC LIMIT ?3"
                ),
                &[text(team_id), opt_text(after), num(limit as i64)],
            )
            .await?;
        rows.into_iter().map(ApiKeyRow::record).collect()
    }

    /// The team's device keys that can still authenticate: not revoked, not expired. Presence
    /// counts only these, so revoking a key takes its agent out at once.
    /// `page`: `limit` of them after the id `after`, oldest first; `None` for all of them.
    pub async fn device_keys(
        &self,
        team_id: &str,
        now: UnixMillis,
        page: Option<(Option<&str>, usize)>,
    ) -> Result<Vec<DeviceKey>> {
        #[derive(Deserialize)]
        struct Row {
            id: String,
            name: String,
        }
        let rows: Vec<Row> = self
            .all(
                "SELECT id, name FROM api_keys WHERE team_id = ?1 AND kind = 'device' \
                 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?2) \
                 AND (?3 IS NULL OR id > ?3) ORDER BY id LIMIT ?4",
                &[
                    text(team_id),
                    num(now),
                    opt_text(page.and_then(|(after, _)| after)),
                    num(page.map_or(-1, |(_, limit)| limit as i64)),
                ],
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| DeviceKey {
                id: r.id,
                name: r.name,
            })
            .collect())
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

    /// Revokes a key of this team; revoking again keeps the first revocation time and writes
    /// no second `api_key.revoked` event.
    pub async fn revoke_api_key(
        &self,
        team_id: &str,
        id: &str,
        now: UnixMillis,
        audit: &AuditEvent,
    ) -> Result<Option<ApiKeyRecord>> {
        let results = self
            .batch(vec![
                self.stmt(
                    &format!(
                        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?3) WHERE team_id = ?1 AND id = ?2 \
                         RETURNING {API_KEY_COLUMNS}"
                    ),
                    &[text(team_id), text(id), num(now)],
                )?,
                self.audit_insert(
                    audit,
                    "EXISTS (SELECT 1 FROM api_keys WHERE id = ?10 AND revoked_at = ?7)",
                    None,
                    None,
                )?,
            ])
            .await?;
        first_row::<ApiKeyRow>(&results, 0)?
            .map(ApiKeyRow::record)
            .transpose()
    }

    /// Records use, at most once per resolution window whatever the concurrency.
    pub async fn touch_api_key(&self, id: &str, now: UnixMillis, resolution_ms: i64) -> Result<()> {
        self.run(self.stmt(
            "UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at <= ?3)",
            &[text(id), num(now), num(now - resolution_ms)],
        )?)
        .await
    }
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

/// Whether the `index`th statement of a batch changed any row.
fn changed(results: &[worker::D1Result], index: usize) -> bool {
    results
        .get(index)
        .and_then(|r| r.meta().ok().flatten())
        .and_then(|m| m.changes)
        .unwrap_or(0)
        > 0
}

/// Team ?1's owner count, read inside a member statement.
const OWNER_COUNT: &str =
    "(SELECT COUNT(*) FROM team_members WHERE team_id = ?1 AND role = 'owner')";

/// The caller's role in team ?1 (NULL when not a member), read inside a member statement;
/// `param` is the statement parameter that holds the caller's user id.
fn actor_role(param: &str) -> String {
    format!("(SELECT role FROM team_members WHERE team_id = ?1 AND user_id = {param})")
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
