//! The scheduled key-rotation job: re-seals credentials still under an old key with the
//! active key, in bounded batches. Safe to run at any time, any number of times, alongside
//! writes: a row is only replaced while it still holds the blob that was re-sealed, and a
//! row that cannot be opened is left exactly as it is and reported.

use serde::Serialize;
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
};

/// Batches per run: two D1 calls each, so a run stays well inside the subrequest limit,
/// and the next cron run picks up the rest.
const MAX_BATCHES: usize = 20;

#[derive(Debug, Default, Serialize)]
pub struct RotationReport {
    pub job: &'static str,
    pub active_key_id: String,
    pub reencrypted: usize,
    /// Rows changed by a concurrent write before they could be replaced: already fine.
    pub skipped: usize,
    /// Rows that did not open (key missing from the ring, or damaged): left untouched.
    pub failed: usize,
    pub complete: bool,
}

pub async fn run(env: &Env, config: &Config) -> Result<RotationReport, ApiError> {
    let ring: &KeyRing = config.key_ring.as_ref().ok_or_else(|| {
        ApiError::unavailable(
            "Credential storage is not configured",
            "CREDENTIAL_KEYS is not set",
        )
    })?;
    let repo = Repo::new(env)?;
    let mut report = RotationReport {
        job: "reencrypt_credentials",
        active_key_id: ring.active_key_id().to_string(),
        ..Default::default()
    };
    let mut after = None;
    for _ in 0..MAX_BATCHES {
        let rows = repo
            .rows_to_reencrypt(ring.active_key_id(), after.as_ref(), config.rotation_batch)
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
                key_id: ring.active_key_id(),
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
        after = rows.into_iter().last();
        if last_batch {
            report.complete = true;
            break;
        }
    }
    console_log!("{}", serde_json::to_string(&report).unwrap_or_default());
    Ok(report)
}
