-- 0002: what the provider said of a stored key (verification on save, re-checks, an
-- upstream 401 seen by the proxy), and when the proxy last used it.
ALTER TABLE credentials ADD COLUMN verification_state TEXT NOT NULL DEFAULT 'unverified'
    CHECK (verification_state IN ('verified', 'unverified', 'rejected'));
ALTER TABLE credentials ADD COLUMN verification_checked_at INTEGER;
ALTER TABLE credentials ADD COLUMN verification_reason TEXT;
ALTER TABLE credentials ADD COLUMN last_used_at INTEGER;
-- Keys stored before verification existed: unverified, and said so.
UPDATE credentials SET verification_reason = 'not_checked';
UPDATE schema_version SET version = 2;
