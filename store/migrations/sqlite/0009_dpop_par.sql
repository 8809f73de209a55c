-- DPoP (RFC 9449) and pushed authorization requests (RFC 9126).
-- A client may be required to bind its tokens to a DPoP key, and to push
-- its authorization requests.
ALTER TABLE clients ADD COLUMN require_dpop BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE clients ADD COLUMN require_par BOOLEAN NOT NULL DEFAULT FALSE;
-- The key a code is bound to (dpop_jkt at the authorize endpoint, §10),
-- and the key a public client's refresh tokens are bound to (§5).
ALTER TABLE auth_codes ADD COLUMN dpop_jkt TEXT NOT NULL DEFAULT '';
ALTER TABLE token_families ADD COLUMN dpop_jkt TEXT NOT NULL DEFAULT '';

-- The replay cache: one row per proof seen (SHA-256 of its key's thumbprint
-- and jti), kept until the proof is too old to be accepted anyway.
CREATE TABLE dpop_proofs (
    hash       TEXT   PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX dpop_proofs_expires ON dpop_proofs (expires_at);

-- Pushed authorization requests, by the SHA-256 of their request_uri. The
-- first authorize request takes one (used_at) and it then lives as long as
-- the sign-in's forms may; issuing the code or an error deletes it.
CREATE TABLE pushed_requests (
    hash       TEXT   PRIMARY KEY,
    client_id  TEXT   NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    params     TEXT   NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX pushed_requests_expires ON pushed_requests (expires_at);
