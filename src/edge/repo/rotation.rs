//! Re-encryption after `CREDENTIAL_KEYS` rotates: the rows still sealed under an old key,
//! and their replacement, each with its audit event.

use super::*;

impl Repo {
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
        let results = self.batch(statements).await?;
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

#[derive(Debug, Deserialize)]
pub struct SealedRow {
    pub team_id: String,
    pub provider: String,
    pub ciphertext: String,
}
