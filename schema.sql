-- The whole D1 schema, for reading. Databases are created and upgraded by the files in
-- migrations/ (`wrangler d1 migrations apply DB --local | --remote --env <env>`); this file
-- is what applying all of them gives.

CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER NOT NULL
);
INSERT INTO schema_version (version)
SELECT 4 WHERE NOT EXISTS (SELECT 1 FROM schema_version);

-- Timestamps are Unix milliseconds, bound as JS numbers (exact below 2^53).
CREATE TABLE IF NOT EXISTS teams (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    -- The team's ETag (0004).
    version    INTEGER NOT NULL DEFAULT 1,
    -- Set by DELETE /api/v1/team (0004): the row stays as a tombstone, with no members,
    -- no usable key and no ciphertext left.
    deleted_at INTEGER
);

CREATE TABLE IF NOT EXISTS team_members (
    team_id  TEXT NOT NULL REFERENCES teams(id),
    user_id  TEXT NOT NULL,
    role     TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    added_at INTEGER NOT NULL,
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX IF NOT EXISTS team_members_by_user ON team_members (user_id);

-- Only the SHA-256 of a key is stored; the key itself is shown once, at creation.
CREATE TABLE IF NOT EXISTS api_keys (
    id           TEXT PRIMARY KEY,
    team_id      TEXT NOT NULL REFERENCES teams(id),
    name         TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('secret', 'device')),
    key_hash     TEXT NOT NULL UNIQUE,
    key_preview  TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    last_used_at INTEGER,
    revoked_at   INTEGER
);
CREATE INDEX IF NOT EXISTS api_keys_by_team ON api_keys (team_id, created_at);

-- One row per team and provider. `ciphertext` is the sealed key (crypto.rs: v1.<key id>.<base64>),
-- NULL once revoked; `key_id` repeats the blob's key id so rotation can find old rows by index.
CREATE TABLE IF NOT EXISTS credentials (
    team_id        TEXT NOT NULL REFERENCES teams(id),
    provider       TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
    cloud_fallback INTEGER NOT NULL CHECK (cloud_fallback IN (0, 1)),
    ciphertext     TEXT,
    key_id         TEXT,
    key_preview    TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    version        INTEGER NOT NULL,
    -- What the provider said of the key (0002): verified, unverified or rejected, when, why.
    verification_state      TEXT NOT NULL DEFAULT 'unverified'
        CHECK (verification_state IN ('verified', 'unverified', 'rejected')),
    verification_checked_at INTEGER,
    verification_reason     TEXT,
    -- The last proxied call, written at most once a minute (0002).
    last_used_at            INTEGER,
    PRIMARY KEY (team_id, provider),
    CHECK ((status = 'active') = (ciphertext IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS credentials_by_key_id ON credentials (key_id) WHERE ciphertext IS NOT NULL;

CREATE TABLE IF NOT EXISTS audit_events (
    id         TEXT PRIMARY KEY,
    team_id    TEXT NOT NULL,
    actor_kind TEXT NOT NULL,
    actor_id   TEXT NOT NULL,
    action     TEXT NOT NULL,
    provider   TEXT,
    created_at INTEGER NOT NULL,
    request_id TEXT NOT NULL,
    -- What the event is about: a member's user id, a key's id, a team's id (0003).
    subject    TEXT
);
CREATE INDEX IF NOT EXISTS audit_events_by_team ON audit_events (team_id, id);
CREATE INDEX IF NOT EXISTS audit_events_by_team_action ON audit_events (team_id, action, id);
CREATE INDEX IF NOT EXISTS audit_events_by_created ON audit_events (created_at);

-- Where the scheduled re-encryption stopped (0004); the next run resumes after it.
CREATE TABLE IF NOT EXISTS job_cursors (
    job            TEXT PRIMARY KEY,
    active_key_id  TEXT NOT NULL,
    after_team_id  TEXT NOT NULL,
    after_provider TEXT NOT NULL,
    updated_at     INTEGER NOT NULL
);
