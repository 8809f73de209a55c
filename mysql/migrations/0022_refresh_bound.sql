-- Whether a refresh token was issued while its family was already bound
-- to a DPoP key; see migrations/postgres/0022_refresh_bound.sql in store
-- (tokens from before this read as not bound). One ALTER, run only while
-- refresh_tokens has no bound column (as in 0020), so that the migration
-- can run again.
SET @refresh_bound = IF((SELECT count(*) FROM information_schema.columns
        WHERE table_schema = DATABASE() AND table_name = 'refresh_tokens' AND column_name = 'bound') = 0,
    'ALTER TABLE refresh_tokens ADD COLUMN bound BOOLEAN NOT NULL DEFAULT FALSE',
    'DO 0');
PREPARE refresh_bound FROM @refresh_bound;
EXECUTE refresh_bound;
DEALLOCATE PREPARE refresh_bound;
