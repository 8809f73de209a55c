-- MySQL and MariaDB start at the schema PostgreSQL reached through 0013,
-- with the same versions: each table is created, in its final form, by the
-- migration that created it on PostgreSQL, and a migration that only
-- changed or rewrote what existed (0003 to 0006, 0012) has nothing to do
-- here, as no MySQL database predates it. Every statement can run again
-- (IF NOT EXISTS, indexes inside CREATE TABLE): MySQL commits each DDL
-- statement by itself, so a migration stopped half way is run again whole.
-- Every table is InnoDB, utf8mb4. Keys and what is looked up by a value
-- from outside (digests, ids, emails) are VARBINARY: a key cannot be TEXT,
-- and MySQL's text collations, utf8mb4_bin included, pad with spaces, so
-- that 'a' would equal 'a '; bytes compare exactly, as PostgreSQL does.
-- Usernames stay text (utf8mb4_bin), for lower(); they hold no spaces.

-- Users, as the deployment guide describes them, with soft delete. A
-- unique index over live rows only is a unique index over a generated
-- column that is NULL for deleted rows (MySQL has no partial index).
CREATE TABLE IF NOT EXISTS users (
    id             BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    email          VARBINARY(255) NOT NULL,            -- lower-cased
    username       VARCHAR(255) NOT NULL,
    password_hash  TEXT         NOT NULL,            -- argon2id, PHC string form
    first_name     TEXT         NOT NULL DEFAULT (''),
    last_name      TEXT         NOT NULL DEFAULT (''),
    role           VARCHAR(16)  NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    is_active      BOOLEAN      NOT NULL DEFAULT TRUE,
    created_at     BIGINT       NOT NULL,            -- Unix seconds
    updated_at     BIGINT       NOT NULL,
    deleted_at     BIGINT,                           -- soft delete
    email_verified BOOLEAN      NOT NULL DEFAULT FALSE,
    live_email     VARBINARY(255) AS (CASE WHEN deleted_at IS NULL THEN email END) STORED,
    live_username  VARCHAR(255) AS (CASE WHEN deleted_at IS NULL THEN lower(username) END) STORED,
    UNIQUE KEY users_email_live (live_email),
    UNIQUE KEY users_username_live (live_username),
    KEY users_deleted_at (deleted_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Per-account login throttling, shared by every instance on this database.
CREATE TABLE IF NOT EXISTS login_failures (
    account      VARBINARY(255) NOT NULL PRIMARY KEY,
    failures     INTEGER      NOT NULL,
    window_start BIGINT       NOT NULL,
    user_id      BIGINT,
    KEY login_failures_user (user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- A family is one chain of rotated refresh tokens (one login or one grant).
CREATE TABLE IF NOT EXISTS token_families (
    id         VARBINARY(255) NOT NULL PRIMARY KEY,
    user_id    BIGINT       NOT NULL,
    client_id  VARBINARY(255) NOT NULL,
    scope      TEXT         NOT NULL DEFAULT (''),
    auth_time  BIGINT       NOT NULL,
    created_at BIGINT       NOT NULL,
    revoked_at BIGINT,
    dpop_jkt   VARBINARY(255) NOT NULL DEFAULT '',
    resource   TEXT         NOT NULL DEFAULT (''),
    KEY token_families_user (user_id),
    KEY token_families_created (created_at),
    FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Refresh tokens, stored only as SHA-256 hex. used_at set means spent.
CREATE TABLE IF NOT EXISTS refresh_tokens (
    hash       VARBINARY(255) NOT NULL PRIMARY KEY,
    family_id  VARBINARY(255) NOT NULL,
    scope      TEXT         NOT NULL DEFAULT (''),
    created_at BIGINT       NOT NULL,
    expires_at BIGINT       NOT NULL,
    used_at    BIGINT,
    KEY refresh_tokens_family (family_id),
    KEY refresh_tokens_expires (expires_at),
    FOREIGN KEY (family_id) REFERENCES token_families (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Revoked access tokens and subjects, read by every instance every few
-- seconds: kind 'jti' (one token), 'sid' (a session's), 'user' or 'client'
-- (every token of it minted at or before not_before_ms).
CREATE TABLE IF NOT EXISTS revocations (
    id            BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    kind          VARCHAR(16)  NOT NULL CHECK (kind IN ('jti', 'user', 'client', 'sid')),
    subject       TEXT         NOT NULL,
    expires_at    BIGINT       NOT NULL,
    created_at    BIGINT       NOT NULL,
    not_before_ms BIGINT       NOT NULL DEFAULT 0,
    KEY revocations_created (created_at),
    KEY revocations_expires (expires_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
