-- Device authorization (RFC 8628); see migrations/postgres/0011_device.sql
-- in store for what each column means.
CREATE TABLE IF NOT EXISTS device_codes (
    hash       VARBINARY(255) NOT NULL PRIMARY KEY,
    user_code  VARBINARY(255) NOT NULL,
    client_id  VARBINARY(255) NOT NULL,
    scope      TEXT         NOT NULL DEFAULT (''),
    created_at BIGINT       NOT NULL,
    expires_at BIGINT       NOT NULL,
    interval_s INTEGER      NOT NULL,
    polled_ms  BIGINT,
    poll_early BOOLEAN      NOT NULL DEFAULT FALSE,
    status     VARCHAR(16)  NOT NULL DEFAULT 'pending',
    user_id    BIGINT,
    auth_time  BIGINT       NOT NULL DEFAULT 0,
    sid        VARBINARY(255) NOT NULL DEFAULT '',
    family_id  VARBINARY(255),
    resource   TEXT         NOT NULL DEFAULT (''),
    UNIQUE KEY device_codes_user_code (user_code),
    KEY device_codes_expires (expires_at),
    KEY device_codes_sid (sid),
    FOREIGN KEY (client_id) REFERENCES clients (id) ON DELETE CASCADE,
    FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
