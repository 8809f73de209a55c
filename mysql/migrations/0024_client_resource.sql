-- The resource a resource server is; see
-- migrations/postgres/0024_client_resource.sql in store (clients from
-- before this read as resource servers of the ISSUER). One ALTER, run
-- only while clients has no resource column (as in 0022), so that the
-- migration can run again.
SET @client_resource = IF((SELECT count(*) FROM information_schema.columns
        WHERE table_schema = DATABASE() AND table_name = 'clients' AND column_name = 'resource') = 0,
    'ALTER TABLE clients ADD COLUMN resource TEXT NOT NULL DEFAULT ('''')',
    'DO 0');
PREPARE client_resource FROM @client_resource;
EXECUTE client_resource;
DEALLOCATE PREPARE client_resource;
