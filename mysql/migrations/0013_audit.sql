-- The audit log: a hash chain (store/audit.go). audit_head's one row is the
-- chain's end (n, hash), which every append updates first, serialising
-- appends, and its base (base_n, base_hash): the last pruned event.
CREATE TABLE IF NOT EXISTS audit_events (
    id         BIGINT       NOT NULL PRIMARY KEY,
    time_ms    BIGINT       NOT NULL,
    action     VARBINARY(255) NOT NULL,
    actor      VARBINARY(255) NOT NULL,
    subject    VARBINARY(255) NOT NULL,
    client_id  TEXT         NOT NULL,
    ip         TEXT         NOT NULL,
    request_id TEXT         NOT NULL,
    outcome    TEXT         NOT NULL,
    detail     TEXT         NOT NULL,
    hash       VARBINARY(64)  NOT NULL,
    KEY audit_events_time (time_ms),
    KEY audit_events_actor (actor),
    KEY audit_events_subject (subject)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE TABLE IF NOT EXISTS audit_head (
    one       INTEGER     NOT NULL PRIMARY KEY CHECK (one = 1),
    n         BIGINT      NOT NULL,
    hash      VARBINARY(64) NOT NULL,
    base_n    BIGINT      NOT NULL,
    base_hash VARBINARY(64) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
-- Run again, this insert changes nothing (see store's keepExisting).
INSERT INTO audit_head (one, n, hash, base_n, base_hash) VALUES (1, 0,
    '0000000000000000000000000000000000000000000000000000000000000000', 0,
    '0000000000000000000000000000000000000000000000000000000000000000')
    ON DUPLICATE KEY UPDATE one = one;
