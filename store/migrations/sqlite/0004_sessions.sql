-- Sessions end when they must (API.md "Sessions and revocation").
-- A revocation may name a session: kind 'sid' revokes every access token
-- whose sid claim is that refresh-token family. SQLite cannot change a CHECK
-- constraint in place, so the table is rebuilt.
CREATE TABLE revocations_new (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    kind          TEXT   NOT NULL CHECK (kind IN ('jti', 'user', 'client', 'sid')),
    subject       TEXT   NOT NULL,
    not_before    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    not_before_ms BIGINT NOT NULL DEFAULT 0
);
INSERT INTO revocations_new (id, kind, subject, not_before, expires_at, created_at, not_before_ms)
    SELECT id, kind, subject, not_before, expires_at, created_at, not_before_ms FROM revocations;
DROP TABLE revocations;
ALTER TABLE revocations_new RENAME TO revocations;
CREATE INDEX revocations_created ON revocations (created_at);
CREATE INDEX revocations_expires ON revocations (expires_at);

-- Login attempts are counted before the password is checked, per login text
-- and per user; user_id lets a success or a reset clear every count that
-- names the user in one statement.
ALTER TABLE login_failures ADD COLUMN user_id INTEGER;
CREATE INDEX login_failures_user ON login_failures (user_id);

-- Clients that may introspect any access token (resource servers).
ALTER TABLE clients ADD COLUMN resource_server BOOLEAN NOT NULL DEFAULT 0;

CREATE INDEX auth_codes_user ON auth_codes (user_id);
