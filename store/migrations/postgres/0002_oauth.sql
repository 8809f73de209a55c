-- OAuth clients. Lists are space-separated (URIs and scopes hold no spaces).
CREATE TABLE clients (
    id                        TEXT    PRIMARY KEY,
    name                      TEXT    NOT NULL,
    secret_hash               TEXT,                      -- SHA-256 hex; NULL for a public client
    redirect_uris             TEXT    NOT NULL DEFAULT '',
    post_logout_redirect_uris TEXT    NOT NULL DEFAULT '',
    grant_types               TEXT    NOT NULL,
    scopes                    TEXT    NOT NULL DEFAULT '',
    first_party               BOOLEAN NOT NULL DEFAULT FALSE,
    created_at                BIGINT  NOT NULL,
    updated_at                BIGINT  NOT NULL
);

-- Authorization codes (RFC 6749 §4.1.2), stored only as SHA-256 hex. After
-- the exchange, family_id and access_jti name what it issued, so that a replay
-- can revoke them (RFC 6749 §4.1.2, RFC 9700 §4.2.4).
CREATE TABLE auth_codes (
    hash           TEXT    PRIMARY KEY,
    client_id      TEXT    NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    user_id        BIGINT  NOT NULL REFERENCES users (id),
    redirect_uri   TEXT    NOT NULL,
    scope          TEXT    NOT NULL DEFAULT '',
    code_challenge TEXT    NOT NULL,
    nonce          TEXT    NOT NULL DEFAULT '',
    auth_time      BIGINT  NOT NULL,
    created_at     BIGINT  NOT NULL,
    expires_at     BIGINT  NOT NULL,
    used_at        BIGINT,
    family_id      TEXT,
    access_jti     TEXT,
    access_exp     BIGINT
);
CREATE INDEX auth_codes_expires ON auth_codes (expires_at);

-- Scopes a user has granted a client, so consent is asked once.
CREATE TABLE consents (
    user_id    BIGINT  NOT NULL REFERENCES users (id),
    client_id  TEXT    NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    scope      TEXT    NOT NULL,
    updated_at BIGINT  NOT NULL,
    PRIMARY KEY (user_id, client_id)
);

-- Browser sessions of the authorization endpoint; the cookie holds the token,
-- the table only its SHA-256 hex.
CREATE TABLE sessions (
    hash       TEXT    PRIMARY KEY,
    user_id    BIGINT  NOT NULL REFERENCES users (id),
    auth_time  BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

-- One-time password reset tokens, SHA-256 hex.
CREATE TABLE reset_tokens (
    hash       TEXT    PRIMARY KEY,
    user_id    BIGINT  NOT NULL REFERENCES users (id),
    created_at BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL,
    used_at    BIGINT
);
