//! The scheduled key-rotation job: re-seals credentials still under an old key with the
//! active key, in bounded batches. Safe to run at any time, any number of times, alongside
//! writes: a row is only replaced while it still holds the blob that was re-sealed, and a
//! row that cannot be opened is left exactly as it is and reported.

use worker::{console_log, Env};

use super::{
    app,
    repo::{Repo, Resealed},
};
use crate::core::{
    audit::AuditEvent,
    config::Config,
    crypto::{credential_aad, KeyRing},
    error::ApiError,
    ids::new_id,
    json::Obj,
};

/// The job's name, in its log line and as the key of its cursor in `job_cursors`.
const JOB: &str = "reencrypt_credentials";

#[derive(Debug, Default)]
pub struct RotationReport {
    pub job: &'static str,
    pub active_key_id: String,
    pub reencrypted: usize,
    /// Rows changed by a concurrent write before they could be replaced: already fine.
    pub skipped: usize,
    /// Rows that did not open (key missing from the ring, or damaged): left untouched.
    pub failed: usize,
    pub complete: bool,
    /// Where this run started: after the row the last run stopped at, or at the top.
    pub resumed: bool,
}

impl RotationReport {
    /// The job's log line.
    pub fn to_json(&self) -> String {
        Obj::new()
            .str("job", self.job)
            .str("active_key_id", &self.active_key_id)
            .int("reencrypted", self.reencrypted as i64)
            .int("skipped", self.skipped as i64)
            .int("failed", self.failed as i64)
            .bool("complete", self.complete)
            .bool("resumed", self.resumed)
            .done()
    }
}

pub async fn run(env: &Env, config: &Config) -> Result<RotationReport, ApiError> {
    let ring: &KeyRing = config.key_ring.as_ref().ok_or_else(|| {
        ApiError::unavailable(
            "Credential storage is not configured",
            "CREDENTIAL_KEYS is not set",
        )
    })?;
    let repo = Repo::new(env)?;
    let active = ring.active_key_id();
    // Resumes where the last run stopped, so rows that cannot be re-sealed (left in place,
    // and reported) never hold back the rows after them, however many runs it takes.
    let mut after = repo.job_cursor(JOB, active).await?;
    let mut report = RotationReport {
        job: JOB,
        active_key_id: active.to_string(),
        resumed: after.is_some(),
        ..Default::default()
    };
    for _ in 0..config.rotation_max_batches {
        let rows = repo
            .rows_to_reencrypt(active, after.as_ref(), config.rotation_batch)
            .await?;
        let last_batch = rows.len() < config.rotation_batch;
        let mut resealed = Vec::with_capacity(rows.len());
        for row in &rows {
            let aad = credential_aad(&row.team_id, &row.provider);
            let Ok(plaintext) = ring.open(&row.ciphertext, &aad) else {
                report.failed += 1;
                continue;
            };
            let now = app::now();
            resealed.push(Resealed {
                row,
                sealed: ring.seal(&plaintext, &aad),
                key_id: active,
                audit: AuditEvent {
                    id: new_id(now).to_string(),
                    team_id: row.team_id.clone(),
                    actor_kind: "system".into(),
                    actor_id: "key-rotation".into(),
                    action: "credential.reencrypt".into(),
                    provider: Some(row.provider.clone()),
                    subject: None,
                    created_at: now,
                    request_id: "scheduled".into(),
                },
            });
        }
        for replaced in repo.replace_ciphertexts(&resealed).await? {
            if replaced {
                report.reencrypted += 1;
            } else {
                report.skipped += 1;
            }
        }
        drop(resealed);
        if let Some(row) = rows.last() {
            after = Some(row.key());
        }
        if last_batch {
            report.complete = true;
            break;
        }
    }
    // A complete pass starts the next run from the top (new rows, rows that failed); an
    // incomplete one is resumed after its last row.
    let cursor = if report.complete {
        None
    } else {
        after.as_ref()
    };
    repo.save_job_cursor(JOB, active, cursor, app::now())
        .await?;
    console_log!("{}", report.to_json());
    Ok(report)
}
