-- Users, as the deployment guide describes them, with soft delete.
CREATE TABLE users (
    id            BIGSERIAL PRIMARY KEY,
    email         TEXT    NOT NULL,              -- lower-cased
    username      TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,              -- argon2id, PHC string form
    first_name    TEXT    NOT NULL DEFAULT '',
    last_name     TEXT    NOT NULL DEFAULT '',
    role          TEXT    NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    is_active     BOOLEAN NOT NULL DEFAULT TRUE,
    created_at    BIGINT  NOT NULL,              -- Unix seconds
    updated_at    BIGINT  NOT NULL,
    deleted_at    BIGINT                         -- soft delete
);
-- Unique among live rows only, so a deleted account's address can sign up again.
CREATE UNIQUE INDEX users_email_live ON users (email) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX users_username_live ON users (lower(username)) WHERE deleted_at IS NULL;
CREATE INDEX users_deleted_at ON users (deleted_at);

-- Per-account login throttling, shared by every instance on this database.
-- account is a SHA-256 of the user id or, for unknown logins, of the login text.
CREATE TABLE login_failures (
    account      TEXT   PRIMARY KEY,
    failures     INTEGER NOT NULL,
    window_start BIGINT NOT NULL
);

-- A family is one chain of rotated refresh tokens (one login or one grant).
CREATE TABLE token_families (
    id         TEXT    PRIMARY KEY,
    user_id    BIGINT  NOT NULL REFERENCES users (id),
    client_id  TEXT    NOT NULL,
    scope      TEXT    NOT NULL DEFAULT '',
    auth_time  BIGINT  NOT NULL,
    created_at BIGINT  NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX token_families_user ON token_families (user_id);

-- Refresh tokens, stored only as SHA-256 hex. used_at set means spent.
CREATE TABLE refresh_tokens (
    hash       TEXT   PRIMARY KEY,
    family_id  TEXT   NOT NULL REFERENCES token_families (id) ON DELETE CASCADE,
    scope      TEXT   NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at);

-- Revoked access tokens and subjects, read by every instance every few seconds.
-- kind 'jti': the token with that jti; 'user' / 'client': every token of that
-- user or client issued at or before not_before.
CREATE TABLE revocations (
    id         BIGSERIAL PRIMARY KEY,
    kind       TEXT   NOT NULL CHECK (kind IN ('jti', 'user', 'client')),
    subject    TEXT   NOT NULL,
    not_before BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX revocations_created ON revocations (created_at);
CREATE INDEX revocations_expires ON revocations (expires_at);
