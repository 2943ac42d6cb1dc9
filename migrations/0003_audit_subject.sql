-- 0003: a complete audit trail. `subject` says what an event is about (a member's user id,
-- a key's id, a team's id); indexes serve the action filter and the retention job.
ALTER TABLE audit_events ADD COLUMN subject TEXT;
CREATE INDEX IF NOT EXISTS audit_events_by_team_action ON audit_events (team_id, action, id);
CREATE INDEX IF NOT EXISTS audit_events_by_created ON audit_events (created_at);
UPDATE schema_version SET version = 3;
