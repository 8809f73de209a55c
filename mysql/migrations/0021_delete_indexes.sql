-- A client's families, revoked by client_id at its deletion
-- (store.DeleteClient); see migrations/postgres/0021_delete_indexes.sql in
-- store, whose other indexes MySQL had already. One ALTER, run only while
-- token_families has no such index (as in 0018), so that the migration can
-- run again.
SET @family_client = IF((SELECT count(*) FROM information_schema.statistics
        WHERE table_schema = DATABASE() AND table_name = 'token_families' AND index_name = 'token_families_client') = 0,
    'ALTER TABLE token_families ADD KEY token_families_client (client_id)',
    'DO 0');
PREPARE family_client FROM @family_client;
EXECUTE family_client;
DEALLOCATE PREPARE family_client;
