//! Re-encryption after `CREDENTIAL_KEYS` rotates: the rows still sealed under an old key,
//! and their replacement, each with its audit event.

use super::*;

impl Repo {
    /// Where the job last stopped while re-sealing under `active_key_id`: `None` when it
    /// has not started, finished, or was re-sealing under another key.
    pub async fn job_cursor(&self, job: &str, active_key_id: &str) -> Result<Option<RowKey>> {
        self.first(
            "SELECT after_team_id AS team_id, after_provider AS provider FROM job_cursors \
             WHERE job = ?1 AND active_key_id = ?2",
            &[text(job), text(active_key_id)],
        )
        .await
    }

    /// Saves where the job stopped (`Some`), or that it went through every row (`None`, so
    /// the next run starts from the top).
    pub async fn save_job_cursor(
        &self,
        job: &str,
        active_key_id: &str,
        after: Option<&RowKey>,
        now: UnixMillis,
    ) -> Result<()> {
        let statement = match after {
            Some(after) => self.stmt(
                "INSERT INTO job_cursors (job, active_key_id, after_team_id, after_provider, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (job) DO UPDATE SET \
                   active_key_id = excluded.active_key_id, after_team_id = excluded.after_team_id, \
                   after_provider = excluded.after_provider, updated_at = excluded.updated_at",
                &[
                    text(job),
                    text(active_key_id),
                    text(&after.team_id),
                    text(&after.provider),
                    num(now),
                ],
            )?,
            None => self.stmt("DELETE FROM job_cursors WHERE job = ?1", &[text(job)])?,
        };
        self.run(statement).await?;
        Ok(())
    }

    /// Sealed rows not under `active_key_id`, in key order after `after`.
    pub async fn rows_to_reencrypt(
        &self,
        active_key_id: &str,
        after: Option<&RowKey>,
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
            .map(|i| changed(&results, 2 * i + 1))
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

d1_row! {
    /// A credential row's key, the rotation cursor's unit.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct RowKey {
        pub team_id: String,
        pub provider: String,
    }
}

d1_row! {
    #[derive(Debug)]
    pub struct SealedRow {
        pub team_id: String,
        pub provider: String,
        pub ciphertext: String,
    }
}

impl SealedRow {
    pub fn key(&self) -> RowKey {
        RowKey {
            team_id: self.team_id.clone(),
            provider: self.provider.clone(),
        }
    }
}
