-- Sessions end when they must (API.md "Sessions and revocation").
-- A revocation may name a session: kind 'sid' revokes every access token
-- whose sid claim is that refresh-token family.
ALTER TABLE revocations DROP CONSTRAINT revocations_kind_check;
ALTER TABLE revocations ADD CONSTRAINT revocations_kind_check CHECK (kind IN ('jti', 'user', 'client', 'sid'));

-- Login attempts are counted before the password is checked, per login text
-- and per user; user_id lets a success or a reset clear every count that
-- names the user in one statement.
ALTER TABLE login_failures ADD COLUMN user_id BIGINT;
CREATE INDEX login_failures_user ON login_failures (user_id);

-- Clients that may introspect any access token (resource servers).
ALTER TABLE clients ADD COLUMN resource_server BOOLEAN NOT NULL DEFAULT FALSE;

CREATE INDEX auth_codes_user ON auth_codes (user_id);
