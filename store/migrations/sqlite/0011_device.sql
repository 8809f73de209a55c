-- Device authorization (RFC 8628). A row is one device's request: the
-- device_code is stored only as its SHA-256 (hash), the user code only as
-- an HMAC under the server's key (user_code), unique so that a typed code
-- finds one request. status moves pending → approved or denied (at the
-- device page) → redeemed (at the token endpoint, once). interval_s is the
-- polling interval, which grows by 5 s with each slow_down (§3.5);
-- polled_ms is the last poll in Unix milliseconds and poll_early says
-- whether that poll came before the interval had passed. After the
-- redemption, family_id names the session it started, so that a replay can
-- end it. Rows go an hour after they expire (Purge).
CREATE TABLE device_codes (
    hash        TEXT    PRIMARY KEY,
    user_code   TEXT    NOT NULL UNIQUE,
    client_id   TEXT    NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    scope       TEXT    NOT NULL DEFAULT '',
    created_at  BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL,
    interval_s  INTEGER NOT NULL,
    polled_ms   BIGINT,
    poll_early  BOOLEAN NOT NULL DEFAULT 0,
    status      TEXT    NOT NULL DEFAULT 'pending',
    user_id     INTEGER REFERENCES users (id),
    auth_time   BIGINT  NOT NULL DEFAULT 0,
    sid         TEXT    NOT NULL DEFAULT '',
    family_id   TEXT
);
CREATE INDEX device_codes_expires ON device_codes (expires_at);
