-- Consent is per resource (RFC 8707): a user who let a client reach one
-- API (or the ISSUER) has not let it reach another. resource is one of
-- RESOURCES, or '' for none (the ISSUER), which every row before this one
-- was for.
ALTER TABLE consents ADD COLUMN resource TEXT NOT NULL DEFAULT '',
    DROP CONSTRAINT consents_pkey,
    ADD PRIMARY KEY (user_id, client_id, resource);
