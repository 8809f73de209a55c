-- Consent is per resource (RFC 8707): a user who let a client reach one
-- API (or the ISSUER) has not let it reach another. resource is one of
-- RESOURCES (at most 512 bytes), or '' for none (the ISSUER), which every
-- row before this one was for. The ALTER is one statement, so it happens
-- whole or not at all; MySQL 8 has no ADD COLUMN IF NOT EXISTS, so that
-- the migration can run again (stopped after the ALTER, before its
-- record) the ALTER runs only while consents has no resource column.
SET @consent_resource = IF((SELECT count(*) FROM information_schema.columns
        WHERE table_schema = DATABASE() AND table_name = 'consents' AND column_name = 'resource') = 0,
    'ALTER TABLE consents ADD COLUMN resource VARBINARY(512) NOT NULL DEFAULT '''', DROP PRIMARY KEY, ADD PRIMARY KEY (user_id, client_id, resource)',
    'DO 0');
PREPARE consent_resource FROM @consent_resource;
EXECUTE consent_resource;
DEALLOCATE PREPARE consent_resource;
