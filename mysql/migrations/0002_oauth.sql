-- OAuth clients. URI lists are JSON arrays; grant types and scopes are
-- space-separated (they hold no spaces).
CREATE TABLE IF NOT EXISTS clients (
    id                         VARBINARY(255) NOT NULL PRIMARY KEY,
    name                       TEXT         NOT NULL,
    secret_hash                TEXT,                      -- SHA-256 hex; NULL for a public client
    redirect_uris              TEXT         NOT NULL DEFAULT ('[]'),
    post_logout_redirect_uris  TEXT         NOT NULL DEFAULT ('[]'),
    grant_types                TEXT         NOT NULL,
    scopes                     TEXT         NOT NULL DEFAULT (''),
    first_party                BOOLEAN      NOT NULL DEFAULT FALSE,
    created_at                 BIGINT       NOT NULL,
    updated_at                 BIGINT       NOT NULL,
    resource_server            BOOLEAN      NOT NULL DEFAULT FALSE,
    backchannel_logout_uri     TEXT         NOT NULL DEFAULT (''),
    require_dpop               BOOLEAN      NOT NULL DEFAULT FALSE,
    require_par                BOOLEAN      NOT NULL DEFAULT FALSE,
    registration_hash          VARBINARY(255),
    token_endpoint_auth_method VARBINARY(64)  NOT NULL DEFAULT '',
    UNIQUE KEY clients_registration_hash (registration_hash)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Authorization codes (RFC 6749 §4.1.2), stored only as SHA-256 hex. After
-- the exchange, family_id and access_jti name what it issued, so that a
-- replay can revoke them.
CREATE TABLE IF NOT EXISTS auth_codes (
    hash           VARBINARY(255) NOT NULL PRIMARY KEY,
    client_id      VARBINARY(255) NOT NULL,
    user_id        BIGINT       NOT NULL,
    redirect_uri   TEXT         NOT NULL,
    scope          TEXT         NOT NULL DEFAULT (''),
    code_challenge TEXT         NOT NULL,
    nonce          TEXT         NOT NULL DEFAULT (''),
    auth_time      BIGINT       NOT NULL,
    created_at     BIGINT       NOT NULL,
    expires_at     BIGINT       NOT NULL,
    used_at        BIGINT,
    family_id      VARBINARY(255),
    access_jti     TEXT,
    access_exp     BIGINT,
    sid            VARBINARY(255) NOT NULL DEFAULT '',
    dpop_jkt       VARBINARY(255) NOT NULL DEFAULT '',
    resource       TEXT         NOT NULL DEFAULT (''),
    KEY auth_codes_expires (expires_at),
    KEY auth_codes_user (user_id),
    KEY auth_codes_sid (sid),
    FOREIGN KEY (client_id) REFERENCES clients (id) ON DELETE CASCADE,
    FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Scopes a user has granted a client, so consent is asked once.
CREATE TABLE IF NOT EXISTS consents (
    user_id    BIGINT       NOT NULL,
    client_id  VARBINARY(255) NOT NULL,
    scope      TEXT         NOT NULL,
    updated_at BIGINT       NOT NULL,
    PRIMARY KEY (user_id, client_id),
    FOREIGN KEY (user_id) REFERENCES users (id),
    FOREIGN KEY (client_id) REFERENCES clients (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Browser sessions of the authorization endpoint; the cookie holds the
-- token, the table only its SHA-256 hex, and sid its public id.
CREATE TABLE IF NOT EXISTS sessions (
    hash       VARBINARY(255) NOT NULL PRIMARY KEY,
    user_id    BIGINT       NOT NULL,
    auth_time  BIGINT       NOT NULL,
    expires_at BIGINT       NOT NULL,
    sid        VARBINARY(255) NOT NULL DEFAULT '',
    KEY sessions_user (user_id),
    KEY sessions_sid (sid),
    FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- One-time password reset tokens, SHA-256 hex; at most one working link per
-- account (a unique index over a column that is NULL once a link is used).
CREATE TABLE IF NOT EXISTS reset_tokens (
    hash       VARBINARY(255) NOT NULL PRIMARY KEY,
    user_id    BIGINT       NOT NULL,
    created_at BIGINT       NOT NULL,
    expires_at BIGINT       NOT NULL,
    used_at    BIGINT,
    live_user  BIGINT AS (CASE WHEN used_at IS NULL THEN user_id END) STORED,
    KEY reset_tokens_user (user_id, created_at),
    UNIQUE KEY reset_tokens_one_live (live_user),
    FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
