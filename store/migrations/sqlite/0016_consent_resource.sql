-- Consent is per resource (RFC 8707): a user who let a client reach one
-- API (or the ISSUER) has not let it reach another. resource is one of
-- RESOURCES, or '' for none (the ISSUER), which every row before this one
-- was for. SQLite cannot change a primary key in place, so the table is
-- rebuilt.
CREATE TABLE consents_new (
    user_id    INTEGER NOT NULL REFERENCES users (id),
    client_id  TEXT    NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    resource   TEXT    NOT NULL DEFAULT '',
    scope      TEXT    NOT NULL,
    updated_at BIGINT  NOT NULL,
    PRIMARY KEY (user_id, client_id, resource)
);
INSERT INTO consents_new (user_id, client_id, scope, updated_at)
    SELECT user_id, client_id, scope, updated_at FROM consents;
DROP TABLE consents;
ALTER TABLE consents_new RENAME TO consents;
