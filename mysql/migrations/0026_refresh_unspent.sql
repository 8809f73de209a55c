-- The unspent refresh tokens by expiry, for the purge; see
-- migrations/postgres/0026_refresh_unspent.sql in store. MySQL has no
-- partial index: (used_at, expires_at) reads the unspent (used_at NULL)
-- by expiry. Each ALTER runs only while it has something to do (as in
-- 0023), so that the migration can run again.
SET @refresh_unspent = IF((SELECT count(*) FROM information_schema.statistics
        WHERE table_schema = DATABASE() AND table_name = 'refresh_tokens' AND index_name = 'refresh_tokens_unspent') = 0,
    'ALTER TABLE refresh_tokens ADD KEY refresh_tokens_unspent (used_at, expires_at)',
    'DO 0');
PREPARE refresh_unspent FROM @refresh_unspent;
EXECUTE refresh_unspent;
DEALLOCATE PREPARE refresh_unspent;
SET @refresh_expires = IF((SELECT count(*) FROM information_schema.statistics
        WHERE table_schema = DATABASE() AND table_name = 'refresh_tokens' AND index_name = 'refresh_tokens_expires') > 0,
    'ALTER TABLE refresh_tokens DROP KEY refresh_tokens_expires',
    'DO 0');
PREPARE refresh_expires FROM @refresh_expires;
EXECUTE refresh_expires;
DEALLOCATE PREPARE refresh_expires;
