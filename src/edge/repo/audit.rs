//! The audit trail: inserts that ride in a change's own batch, the list with its filters,
//! and retention.

use super::*;
use crate::core::audit::PageRequest;

impl Repo {
    /// An audit event on its own: for decisions that change nothing else (routing).
    pub async fn insert_audit_event(&self, event: &AuditEvent) -> Result<()> {
        self.run(self.audit_insert(event, "?9 IS NULL", None, None)?)
            .await?;
        Ok(())
    }

    /// An audit event's insert, written only `WHERE {condition}`; `?9` is `expected`. For a
    /// change made by the statement before it in a batch, `changes() > 0` is the condition.
    pub(super) fn audit_insert(
        &self,
        audit: &AuditEvent,
        condition: &str,
        expected: Option<i64>,
        guard: Option<&WriteGuard<'_>>,
    ) -> Result<D1PreparedStatement> {
        let sql = format!(
            "INSERT INTO audit_events (id, team_id, actor_kind, actor_id, action, provider, created_at, request_id, subject) \
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?10 WHERE {condition}"
        );
        let args = [
            text(&audit.id),
            text(&audit.team_id),
            text(&audit.actor_kind),
            text(&audit.actor_id),
            text(&audit.action),
            opt_text(audit.provider.as_deref()),
            num(audit.created_at),
            text(&audit.request_id),
            opt_num(expected),
            opt_text(audit.subject.as_deref()),
        ];
        match guard {
            Some(guard) => self.guarded(&sql, &args, guard),
            None => self.stmt(&sql, &args),
        }
    }

    pub async fn audit_events(&self, team_id: &str, page: &PageRequest) -> Result<Vec<AuditEvent>> {
        d1_row! {
            struct Row {
                id: String,
                team_id: String,
                actor_kind: String,
                actor_id: String,
                action: String,
                provider: Option<String>,
                subject: Option<String>,
                created_at: f64,
                request_id: String,
            }
        }
        let rows: Vec<Row> = self
            .all(
                "SELECT id, team_id, actor_kind, actor_id, action, provider, subject, created_at, request_id \
                 FROM audit_events WHERE team_id = ?1 AND (?2 IS NULL OR id < ?2) \
                   AND (?4 IS NULL OR action = ?4) AND (?5 IS NULL OR created_at >= ?5) \
                   AND (?6 IS NULL OR created_at < ?6) \
                 ORDER BY id DESC LIMIT ?3",
                &[
                    text(team_id),
                    opt_text(page.before.as_deref()),
                    num(page.limit as i64 + 1),
                    opt_text(page.action.as_deref()),
                    opt_num(page.since),
                    opt_num(page.until),
                ],
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
                subject: r.subject,
                created_at: millis(r.created_at),
                request_id: r.request_id,
            })
            .collect())
    }

    /// Deletes events older than `before`, at most `batch` at a time and `rounds` batches in
    /// one call (a cron run has a subrequest budget). Returns how many went.
    pub async fn prune_audit_events(
        &self,
        before: UnixMillis,
        batch: usize,
        rounds: usize,
    ) -> Result<u64> {
        let mut deleted = 0;
        for _ in 0..rounds {
            let changed = self
                .run(self.stmt(
                    "DELETE FROM audit_events WHERE id IN \
                     (SELECT id FROM audit_events WHERE created_at < ?1 LIMIT ?2)",
                    &[num(before), num(batch as i64)],
                )?)
                .await?;
            deleted += changed;
            if changed < batch as u64 {
                break;
            }
        }
        Ok(deleted)
    }
}
