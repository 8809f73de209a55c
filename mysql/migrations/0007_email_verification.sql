-- Email verification links, stored only as SHA-256 hex; used_at set means
-- spent. At most one working link per account: a new one voids the old.
CREATE TABLE IF NOT EXISTS email_verification_tokens (
    hash       VARBINARY(255) NOT NULL PRIMARY KEY,
    user_id    BIGINT       NOT NULL,
    email      VARBINARY(255) NOT NULL,              -- the address the link was mailed to
    created_at BIGINT       NOT NULL,
    expires_at BIGINT       NOT NULL,
    used_at    BIGINT,
    live_user  BIGINT AS (CASE WHEN used_at IS NULL THEN user_id END) STORED,
    KEY email_verification_tokens_user (user_id, created_at),
    UNIQUE KEY email_verification_tokens_one_live (live_user),
    FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
