//! API keys: creation under the team's cap, lists, revocation and use.

use super::*;

impl Repo {
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
        d1_row! {
            struct Row {
                members: f64,
                keys: f64,
            }
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
    /// `limit` of them after the id `after`, oldest first (the route decision reads all of
    /// them in its authentication batch instead, with the same SQL).
    pub async fn device_keys(
        &self,
        team_id: &str,
        now: UnixMillis,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeviceKey>> {
        let rows: Vec<DeviceKeyRow> = self
            .all(
                &device_keys_sql("?1"),
                &[text(team_id), num(now), opt_text(after), num(limit as i64)],
            )
            .await?;
        Ok(rows.into_iter().map(DeviceKeyRow::key).collect())
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
        .await?;
        Ok(())
    }
}

/// The usable device keys of the team `team` names (a parameter, or a subquery), with the
/// time at ?2 and the page at ?3 (after this id, or NULL) and ?4 (a limit, or -1 for all).
pub(super) fn device_keys_sql(team: &str) -> String {
    format!(
        "SELECT id, name FROM api_keys WHERE team_id = {team} AND kind = 'device' \
         AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?2) \
         AND (?3 IS NULL OR id > ?3) ORDER BY id LIMIT ?4"
    )
}

d1_row! {
    pub(super) struct DeviceKeyRow {
        id: String,
        name: String,
    }
}

impl DeviceKeyRow {
    pub(super) fn key(self) -> DeviceKey {
        DeviceKey {
            id: self.id,
            name: self.name,
        }
    }
}
