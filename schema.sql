-- The D1 schema. Applied by scripts/dev.sh and the test harness to local databases, and by
-- `wrangler d1 execute DB --remote --env <env> --file schema.sql` to deployed ones.
-- Idempotent: every statement can run again on an existing database.

CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER NOT NULL
);
INSERT INTO schema_version (version)
SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM schema_version);
