-- Initial access tokens for dynamic client registration (RFC 7591 §3), by
-- their SHA-256; the registration they allow deletes them.
CREATE TABLE IF NOT EXISTS registration_tokens (
    hash       VARBINARY(255) NOT NULL PRIMARY KEY,
    created_at BIGINT       NOT NULL,
    expires_at BIGINT       NOT NULL,
    KEY registration_tokens_expires (expires_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
