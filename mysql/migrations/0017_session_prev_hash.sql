-- The hash of the cookie a browser sign-in had before the same user signed
-- in again in that browser (store.Session.Continues: same sid, new
-- cookie), or ''. Only a logout reads it: one sent with the old cookie,
-- beside the new sign-in, still ends the sign-in (store.DeleteSession).
-- One ALTER, run only while sessions has no prev_hash (as in 0016), so
-- that the migration can run again.
SET @session_prev_hash = IF((SELECT count(*) FROM information_schema.columns
        WHERE table_schema = DATABASE() AND table_name = 'sessions' AND column_name = 'prev_hash') = 0,
    'ALTER TABLE sessions ADD COLUMN prev_hash VARBINARY(255) NOT NULL DEFAULT '''', ADD KEY sessions_prev_hash (prev_hash)',
    'DO 0');
PREPARE session_prev_hash FROM @session_prev_hash;
EXECUTE session_prev_hash;
DEALLOCATE PREPARE session_prev_hash;
