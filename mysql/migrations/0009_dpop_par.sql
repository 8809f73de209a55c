-- DPoP (RFC 9449): the replay cache, one row per proof seen (SHA-256 of
-- its key's thumbprint and jti), kept until the proof is too old anyway.
CREATE TABLE IF NOT EXISTS dpop_proofs (
    hash       VARBINARY(255) NOT NULL PRIMARY KEY,
    expires_at BIGINT       NOT NULL,
    KEY dpop_proofs_expires (expires_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Pushed authorization requests (RFC 9126), by the SHA-256 of their
-- request_uri.
CREATE TABLE IF NOT EXISTS pushed_requests (
    hash       VARBINARY(255) NOT NULL PRIMARY KEY,
    client_id  VARBINARY(255) NOT NULL,
    params     TEXT         NOT NULL,
    expires_at BIGINT       NOT NULL,
    used_at    BIGINT,
    KEY pushed_requests_expires (expires_at),
    FOREIGN KEY (client_id) REFERENCES clients (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
