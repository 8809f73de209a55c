-- The audit log: a hash chain (store/audit.go). audit_head's one row is the
-- chain's end (n, hash), which every append updates first, serialising
-- appends, and its base (base_n, base_hash): the last pruned event, from
-- which the kept events verify.
CREATE TABLE audit_events (
    id         BIGINT PRIMARY KEY,
    time_ms    BIGINT NOT NULL,
    action     TEXT   NOT NULL,
    actor      TEXT   NOT NULL,
    subject    TEXT   NOT NULL,
    client_id  TEXT   NOT NULL,
    ip         TEXT   NOT NULL,
    request_id TEXT   NOT NULL,
    outcome    TEXT   NOT NULL,
    detail     TEXT   NOT NULL,
    hash       TEXT   NOT NULL
);
CREATE INDEX audit_events_time ON audit_events (time_ms);
CREATE INDEX audit_events_actor ON audit_events (actor);
CREATE INDEX audit_events_subject ON audit_events (subject);
CREATE TABLE audit_head (
    one       INTEGER PRIMARY KEY CHECK (one = 1),
    n         BIGINT NOT NULL,
    hash      TEXT   NOT NULL,
    base_n    BIGINT NOT NULL,
    base_hash TEXT   NOT NULL
);
INSERT INTO audit_head (one, n, hash, base_n, base_hash) VALUES (1, 0,
    '0000000000000000000000000000000000000000000000000000000000000000', 0,
    '0000000000000000000000000000000000000000000000000000000000000000');
