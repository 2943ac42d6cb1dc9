-- 0004: team lifecycle and resumable rotation.
-- A team's `version` is its ETag (If-Match on PATCH and DELETE /api/v1/team); `deleted_at`
-- marks a deleted team. Its row stays, as the tombstone its revoked keys and its audit
-- events point to, and so a deleted team's id is answered 404, never reused.
ALTER TABLE teams ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE teams ADD COLUMN deleted_at INTEGER;

-- Where the scheduled re-encryption stopped, so the next run resumes there. One row per
-- job; `active_key_id` is the key it was re-sealing under (a new active key starts over).
CREATE TABLE IF NOT EXISTS job_cursors (
    job            TEXT PRIMARY KEY,
    active_key_id  TEXT NOT NULL,
    after_team_id  TEXT NOT NULL,
    after_provider TEXT NOT NULL,
    updated_at     INTEGER NOT NULL
);
UPDATE schema_version SET version = 4;
