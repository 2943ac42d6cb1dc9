//! Credentials: the team's sealed provider keys, their audit events, verification, proxy
//! use, and re-encryption after a key rotation.

use wasm_bindgen::JsValue;
use worker::D1PreparedStatement;

use super::{
    all_rows,
    api_keys::{device_keys_sql, DeviceKeyRow},
    corrupt, d1_row, first_row, millis, num, opt_num, opt_text, text, ApiKeyRow, FromRow,
    MemberRow, Repo, Result, API_KEY_COLUMNS,
};
use crate::core::{
    access::Actor,
    api_keys::ApiKeyRecord,
    audit::AuditEvent,
    credentials::{CredentialRecord, Precondition, Status},
    presence::DeviceKey,
    providers::{self, Provider},
    teams::MemberRecord,
    time::UnixMillis,
    verify::{self, Verification},
};

/// Who is writing, re-checked inside the write's own statements (parameters ?20 and ?21),
/// so a key revoked or a role lost between the authentication read and the write gets
/// nothing through.
pub enum WriteGuard<'a> {
    /// An API key: still not revoked and not expired.
    Key { key_id: &'a str, now: UnixMillis },
    /// A session's user: still an owner or admin of the team.
    Manager { team_id: &'a str, user_id: &'a str },
}

impl WriteGuard<'_> {
    pub fn for_actor(actor: &Actor, now: UnixMillis) -> WriteGuard<'_> {
        match actor {
            Actor::Key { key_id, .. } => WriteGuard::Key { key_id, now },
            Actor::User { user_id, team } => WriteGuard::Manager {
                team_id: team.as_ref().map_or("", |(id, _)| id.as_str()),
                user_id,
            },
        }
    }

    fn sql(&self) -> &'static str {
        match self {
            WriteGuard::Key { .. } => {
                "EXISTS (SELECT 1 FROM api_keys WHERE id = ?20 AND revoked_at IS NULL \
                 AND (expires_at IS NULL OR expires_at > ?21))"
            }
            WriteGuard::Manager { .. } => {
                "EXISTS (SELECT 1 FROM team_members WHERE team_id = ?20 AND user_id = ?21 \
                 AND role IN ('owner', 'admin'))"
            }
        }
    }

    fn args(&self) -> [JsValue; 2] {
        match self {
            WriteGuard::Key { key_id, now } => [text(key_id), num(*now)],
            WriteGuard::Manager { team_id, user_id } => [text(team_id), text(user_id)],
        }
    }
}

/// The first parameter the guard uses: statements keep below it.
const GUARD_FROM: usize = 20;

impl Repo {
    /// A statement whose SQL holds `{guard}`, with `args` for ?1.. and the guard's own two.
    pub(super) fn guarded(
        &self,
        sql: &str,
        args: &[JsValue],
        guard: &WriteGuard<'_>,
    ) -> Result<D1PreparedStatement> {
        let mut all = args.to_vec();
        all.resize(GUARD_FROM - 1, JsValue::NULL);
        all.extend(guard.args());
        self.stmt(&sql.replace("{guard}", guard.sql()), &all)
    }

    /// Whether the guard still holds: after a guarded write changed nothing, this tells a
    /// refused writer (401 or 403) from a moved row (412 or a retry).
    pub async fn guard_holds(&self, guard: &WriteGuard<'_>) -> Result<bool> {
        d1_row! {
            struct Row {
                ok: f64,
            }
        }
        let row: Option<Row> = self
            .first(
                &format!("SELECT ({}) AS ok", guard.sql())
                    .replace("?20", "?1")
                    .replace("?21", "?2"),
                &guard.args(),
            )
            .await?;
        Ok(row.is_some_and(|r| r.ok != 0.0))
    }
}

impl Repo {
    /// The API key with this hash and its team's credential for `provider`, in one D1
    /// round trip. The credential is found through the key's own row, so it can only ever
    /// be that key's team's; the caller still decides whether the key may act at all.
    /// `sealed` adds the ciphertext, for the verify and proxy paths only; `devices` adds
    /// the team's usable device keys at that time (the route decision), found the same way.
    pub async fn api_key_and_credential(
        &self,
        key_hash: &str,
        provider: &Provider,
        sealed: bool,
        devices: Option<UnixMillis>,
    ) -> Result<CallerReads<ApiKeyRecord>> {
        const TEAM: &str = "(SELECT team_id FROM api_keys WHERE key_hash = ?1)";
        let key = self.stmt(
            &format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE key_hash = ?1"),
            &[text(key_hash)],
        )?;
        let credential = self.stmt(
            &format!(
                "SELECT {} FROM credentials WHERE team_id = {TEAM} AND provider = ?2",
                columns(sealed)
            ),
            &[text(key_hash), text(provider.name)],
        )?;
        self.caller_and_credential(
            key,
            credential,
            ApiKeyRow::record,
            (TEAM, key_hash),
            devices,
        )
        .await
    }

    /// The caller's membership in `team_id` and that team's credential for `provider`, in
    /// one D1 round trip; `sealed` and `devices` as for [`Repo::api_key_and_credential`].
    pub async fn member_and_credential(
        &self,
        team_id: &str,
        user_id: &str,
        provider: &Provider,
        sealed: bool,
        devices: Option<UnixMillis>,
    ) -> Result<CallerReads<MemberRecord>> {
        let member = self.stmt(
            "SELECT user_id, role, added_at FROM team_members WHERE team_id = ?1 AND user_id = ?2",
            &[text(team_id), text(user_id)],
        )?;
        let credential = self.stmt(
            &format!(
                "SELECT {} FROM credentials WHERE team_id = ?1 AND provider = ?2",
                columns(sealed)
            ),
            &[text(team_id), text(provider.name)],
        )?;
        self.caller_and_credential(
            member,
            credential,
            MemberRow::record,
            ("?1", team_id),
            devices,
        )
        .await
    }

    /// Runs the caller's read and the credential's read as one D1 batch: one round trip.
    /// With `devices`, the batch also reads the usable device keys of the team `team` names
    /// (an SQL expression, and the value bound to its ?1).
    async fn caller_and_credential<Row: FromRow, Caller>(
        &self,
        caller: D1PreparedStatement,
        credential: D1PreparedStatement,
        record: fn(Row) -> Result<Caller>,
        team: (&str, &str),
        devices: Option<UnixMillis>,
    ) -> Result<CallerReads<Caller>> {
        let mut statements = vec![caller, credential];
        if let Some(now) = devices {
            statements.push(self.stmt(
                &device_keys_sql(team.0),
                &[text(team.1), num(now), JsValue::NULL, num(-1)],
            )?);
        }
        let results = self.batch(statements).await?;
        Ok(CallerReads {
            caller: first_row::<Row>(&results, 0)?.map(record).transpose()?,
            credential: first_row::<CredentialRow>(&results, 1)?
                .map(CredentialRow::sealed)
                .transpose()?,
            devices: devices
                .map(|_| all_rows::<DeviceKeyRow>(&results, 2))
                .transpose()?
                .map(|rows| rows.into_iter().map(DeviceKeyRow::key).collect()),
        })
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

    /// The team's credentials by provider name, `limit` of them after `after`.
    pub async fn credentials(
        &self,
        team_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<CredentialRecord>> {
        let rows: Vec<CredentialRow> = self
            .all(
                &format!(
                    "SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE team_id = ?1 \
                     AND (?2 IS NULL OR provider > ?2) ORDER BY provider LIMIT ?3"
                ),
                &[text(team_id), opt_text(after), num(limit as i64)],
            )
            .await?;
        // A row of a provider this build no longer knows is skipped, not an error.
        Ok(rows.into_iter().filter_map(|r| r.record().ok()).collect())
    }

    /// Sets or replaces the sealed key, only while `precondition` and `guard` hold. Returns
    /// `None` when either failed (nothing written, no audit). One D1 round trip: with a
    /// remembered writer, the PUT's only one.
    #[allow(clippy::too_many_arguments)]
    pub async fn put_credential(
        &self,
        team_id: &str,
        provider: &Provider,
        sealed: &str,
        key_id: &str,
        key_preview: &str,
        cloud_fallback: bool,
        verification: &Verification,
        now: UnixMillis,
        precondition: Precondition,
        events: &PutEvents<'_>,
        guard: &WriteGuard<'_>,
    ) -> Result<Option<CredentialRecord>> {
        let change = self.guarded(
            &format!(
                "INSERT INTO credentials (team_id, provider, status, cloud_fallback, ciphertext, key_id, key_preview, created_at, updated_at, version, \
                   verification_state, verification_checked_at, verification_reason) \
                 SELECT ?1, ?2, 'active', ?3, ?4, ?5, ?6, ?7, ?7, 1, ?9, ?10, ?11 WHERE {{guard}} \
                   AND (?12 = 0 OR EXISTS (SELECT 1 FROM credentials WHERE team_id = ?1 AND provider = ?2)) \
                 ON CONFLICT (team_id, provider) DO UPDATE SET status = 'active', cloud_fallback = excluded.cloud_fallback, \
                   ciphertext = excluded.ciphertext, key_id = excluded.key_id, key_preview = excluded.key_preview, \
                   updated_at = excluded.updated_at, version = credentials.version + 1, \
                   verification_state = excluded.verification_state, \
                   verification_checked_at = excluded.verification_checked_at, \
                   verification_reason = excluded.verification_reason \
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
                opt_num(precondition.expected),
                text(verification.state.as_str()),
                opt_num(verification.checked_at),
                opt_text(verification.reason),
                num(precondition.must_exist as i64),
            ],
            guard,
        )?;
        // The events are decided by the batch, before the change, from the row as it is:
        // `credential.put` whenever the change will be made; the verification event only
        // when the key it replaces was active with another verification state.
        let exists = if precondition.must_exist {
            " AND EXISTS (SELECT 1 FROM credentials WHERE team_id = ?2 AND provider = ?6)"
        } else {
            ""
        };
        let changed = format!(
            "{exists} AND EXISTS (SELECT 1 FROM credentials WHERE team_id = ?2 AND provider = ?6 \
               AND status = 'active' AND verification_state <> '{}')",
            verification.state.as_str()
        );
        self.change_with_audit(
            change,
            &[(events.put, exists), (events.verification, &changed)],
            precondition.expected,
            guard,
        )
        .await
    }

    /// Records what a re-check found, if the row is still at `expected` (the key checked is
    /// the key stored). The version moves, so ETags follow; `updated_at` does not, since
    /// the credential itself was not changed.
    pub async fn set_verification(
        &self,
        team_id: &str,
        provider: &Provider,
        verification: &Verification,
        expected: i64,
        events: &[AuditEvent],
        guard: &WriteGuard<'_>,
    ) -> Result<Option<CredentialRecord>> {
        let change = self.guarded(
            &format!(
                "UPDATE credentials SET verification_state = ?3, verification_checked_at = ?4, \
                   verification_reason = ?5, version = version + 1 \
                 WHERE team_id = ?1 AND provider = ?2 AND version = ?6 AND status = 'active' AND {{guard}} \
                 RETURNING {CREDENTIAL_COLUMNS}"
            ),
            &[
                text(team_id),
                text(provider.name),
                text(verification.state.as_str()),
                opt_num(verification.checked_at),
                opt_text(verification.reason),
                num(expected),
            ],
            guard,
        )?;
        let events: Vec<_> = events.iter().map(|e| (e, "")).collect();
        self.change_with_audit(change, &events, Some(expected), guard)
            .await
    }

    /// After a proxied call: `last_used_at`, at most once per `resolution_ms`; and, when the
    /// provider answered 401, the key marked rejected (also at most once per
    /// `resolution_ms`, with an audit event only when the state changes). Both only while
    /// the row is still at `expected`, so a key replaced meanwhile is never marked.
    pub async fn record_proxy_use(
        &self,
        team_id: &str,
        provider: &Provider,
        now: UnixMillis,
        resolution_ms: i64,
        expected: i64,
        rejected: Option<(&Verification, &AuditEvent)>,
    ) -> Result<()> {
        let mut statements = vec![self.stmt(
            "UPDATE credentials SET last_used_at = ?3 WHERE team_id = ?1 AND provider = ?2 \
               AND version = ?5 AND (last_used_at IS NULL OR last_used_at <= ?4)",
            &[
                text(team_id),
                text(provider.name),
                num(now),
                num(now - resolution_ms),
                num(expected),
            ],
        )?];
        if let Some((verification, event)) = rejected {
            statements.push(self.audit_insert(
                event,
                "EXISTS (SELECT 1 FROM credentials WHERE team_id = ?2 AND provider = ?6 \
                   AND version = ?9 AND verification_state <> 'rejected')",
                Some(expected),
                None,
            )?);
            statements.push(self.stmt(
                "UPDATE credentials SET verification_checked_at = ?3, verification_reason = ?5, \
                   version = version + (verification_state <> 'rejected'), verification_state = 'rejected' \
                 WHERE team_id = ?1 AND provider = ?2 AND version = ?6 AND status = 'active' \
                   AND (verification_state <> 'rejected' OR verification_checked_at IS NULL \
                        OR verification_checked_at <= ?4)",
                &[
                    text(team_id),
                    text(provider.name),
                    opt_num(verification.checked_at),
                    num(now - resolution_ms),
                    opt_text(verification.reason),
                    num(expected),
                ],
            )?);
        }
        self.batch(statements).await?;
        Ok(())
    }

    /// Turns cloud fallback on or off, if the row is still at `expected` and, to turn it on,
    /// still active.
    #[allow(clippy::too_many_arguments)]
    pub async fn set_cloud_fallback(
        &self,
        team_id: &str,
        provider: &Provider,
        cloud_fallback: bool,
        now: UnixMillis,
        expected: i64,
        audit: &AuditEvent,
        guard: &WriteGuard<'_>,
    ) -> Result<Option<CredentialRecord>> {
        let change = self.guarded(
            &format!(
                "UPDATE credentials SET cloud_fallback = ?3, updated_at = ?4, version = version + 1 \
                 WHERE team_id = ?1 AND provider = ?2 AND version = ?5 AND (?3 = 0 OR status = 'active') AND {{guard}} \
                 RETURNING {CREDENTIAL_COLUMNS}"
            ),
            &[
                text(team_id),
                text(provider.name),
                JsValue::from_f64(cloud_fallback as u8 as f64),
                num(now),
                num(expected),
            ],
            guard,
        )?;
        self.change_with_audit(change, &[(audit, "")], Some(expected), guard)
            .await
    }

    /// Revokes: the ciphertext is destroyed, fallback turned off; the row stays for status.
    pub async fn revoke_credential(
        &self,
        team_id: &str,
        provider: &Provider,
        now: UnixMillis,
        expected: i64,
        audit: &AuditEvent,
        guard: &WriteGuard<'_>,
    ) -> Result<Option<CredentialRecord>> {
        let change = self.guarded(
            &format!(
                "UPDATE credentials SET status = 'revoked', cloud_fallback = 0, ciphertext = NULL, key_id = NULL, \
                   updated_at = ?3, version = version + 1 \
                 WHERE team_id = ?1 AND provider = ?2 AND version = ?4 AND {{guard}} \
                 RETURNING {CREDENTIAL_COLUMNS}"
            ),
            &[text(team_id), text(provider.name), num(now), num(expected)],
            guard,
        )?;
        self.change_with_audit(change, &[(audit, "")], Some(expected), guard)
            .await
    }

    /// The change and its audit events in one D1 batch (one transaction): all or none.
    /// Each audit insert carries the change's own version condition and guard, so a change
    /// that finds the row moved on, or its writer refused, writes no event either; and its
    /// own further condition (`""` for none, else starting with ` AND `).
    async fn change_with_audit(
        &self,
        change: D1PreparedStatement,
        events: &[(&AuditEvent, &str)],
        expected: Option<i64>,
        guard: &WriteGuard<'_>,
    ) -> Result<Option<CredentialRecord>> {
        let mut statements = Vec::with_capacity(events.len() + 2);
        for (event, also) in events {
            statements.push(self.audit_insert(
                event,
                &format!(
                    "(?9 IS NULL OR EXISTS (SELECT 1 FROM credentials WHERE team_id = ?2 AND provider = ?6 AND version = ?9)) \
                     AND {{guard}}{also}"
                ),
                expected,
                Some(guard),
            )?);
        }
        statements.push(change);
        if self.fail_writes {
            // A NOT NULL violation, raised only after the writes above have run.
            statements.push(self.stmt(
                "INSERT INTO audit_events (id, team_id, actor_kind, actor_id, action, created_at, request_id) \
                 VALUES ('failing-write', NULL, '', '', '', 0, '')",
                &[],
            )?);
        }
        let results = self.batch(statements).await?;
        first_row::<CredentialRow>(&results, events.len())?
            .map(CredentialRow::record)
            .transpose()
    }
}

const CREDENTIAL_COLUMNS: &str =
    "provider, status, cloud_fallback, created_at, updated_at, key_preview, version, \
     verification_state, verification_checked_at, verification_reason, last_used_at";

/// The credential columns, and the ciphertext when `sealed`.
fn columns(sealed: bool) -> String {
    if sealed {
        format!("{CREDENTIAL_COLUMNS}, ciphertext")
    } else {
        CREDENTIAL_COLUMNS.to_string()
    }
}

/// The events a PUT may record, each written only if the batch finds it true (see
/// [`Repo::put_credential`]).
pub struct PutEvents<'a> {
    pub put: &'a AuditEvent,
    /// The provider's word on the new key, recorded when it differs from the old key's.
    pub verification: &'a AuditEvent,
}

/// What a credential endpoint reads in its one round trip: the caller's row, the team's
/// credential, and the team's usable device keys when asked for.
pub struct CallerReads<Caller> {
    pub caller: Option<Caller>,
    pub credential: Option<SealedCredential>,
    pub devices: Option<Vec<DeviceKey>>,
}

/// A credential with its ciphertext, read only by the verify and proxy paths (and
/// `None` there too once the credential is revoked, or when it was read without).
pub struct SealedCredential {
    pub record: CredentialRecord,
    pub ciphertext: Option<String>,
}

d1_row! {
    struct CredentialRow {
        provider: String,
        status: String,
        cloud_fallback: f64,
        created_at: f64,
        updated_at: f64,
        key_preview: String,
        version: f64,
        verification_state: String,
        verification_checked_at: Option<f64>,
        verification_reason: Option<String>,
        last_used_at: Option<f64>,
        ciphertext: Option<String>,
    }
}

impl CredentialRow {
    fn record(self) -> Result<CredentialRecord> {
        self.sealed().map(|s| s.record)
    }

    fn sealed(self) -> Result<SealedCredential> {
        let state = verify::State::parse(&self.verification_state)
            .ok_or_else(|| corrupt("credentials.verification_state"))?;
        let record = CredentialRecord {
            provider: providers::by_name(&self.provider)
                .ok_or_else(|| corrupt("credentials.provider"))?,
            status: Status::parse(&self.status).ok_or_else(|| corrupt("credentials.status"))?,
            cloud_fallback: self.cloud_fallback != 0.0,
            created_at: millis(self.created_at),
            updated_at: millis(self.updated_at),
            key_preview: self.key_preview,
            version: self.version as i64,
            verification: Verification::stored(
                state,
                self.verification_checked_at.map(millis),
                self.verification_reason.as_deref(),
            ),
            last_used_at: self.last_used_at.map(millis),
        };
        Ok(SealedCredential {
            record,
            ciphertext: self.ciphertext,
        })
    }
}
