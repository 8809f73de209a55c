-- The purge's indexes; see migrations/postgres/0028_purge_indexes.sql in
-- store. Each ALTER runs only while its table lacks the index it adds (as
-- in 0026), so that the migration can run again.
SET @token_families_revoked = IF((SELECT count(*) FROM information_schema.statistics
        WHERE table_schema = DATABASE() AND table_name = 'token_families' AND index_name = 'token_families_revoked') = 0,
    'ALTER TABLE token_families ADD KEY token_families_revoked (revoked_at)',
    'DO 0');
PREPARE token_families_revoked FROM @token_families_revoked;
EXECUTE token_families_revoked;
DEALLOCATE PREPARE token_families_revoked;
SET @auth_codes_unused = IF((SELECT count(*) FROM information_schema.statistics
        WHERE table_schema = DATABASE() AND table_name = 'auth_codes' AND index_name = 'auth_codes_unused') = 0,
    'ALTER TABLE auth_codes ADD KEY auth_codes_unused (family_id, expires_at), DROP KEY auth_codes_expires',
    'DO 0');
PREPARE auth_codes_unused FROM @auth_codes_unused;
EXECUTE auth_codes_unused;
DEALLOCATE PREPARE auth_codes_unused;
SET @device_codes_unused = IF((SELECT count(*) FROM information_schema.statistics
        WHERE table_schema = DATABASE() AND table_name = 'device_codes' AND index_name = 'device_codes_unused') = 0,
    'ALTER TABLE device_codes ADD KEY device_codes_unused (family_id, expires_at)',
    'DO 0');
PREPARE device_codes_unused FROM @device_codes_unused;
EXECUTE device_codes_unused;
DEALLOCATE PREPARE device_codes_unused;
SET @sessions_expires = IF((SELECT count(*) FROM information_schema.statistics
        WHERE table_schema = DATABASE() AND table_name = 'sessions' AND index_name = 'sessions_expires') = 0,
    'ALTER TABLE sessions ADD KEY sessions_expires (expires_at)',
    'DO 0');
PREPARE sessions_expires FROM @sessions_expires;
EXECUTE sessions_expires;
DEALLOCATE PREPARE sessions_expires;
SET @login_failures_window = IF((SELECT count(*) FROM information_schema.statistics
        WHERE table_schema = DATABASE() AND table_name = 'login_failures' AND index_name = 'login_failures_window') = 0,
    'ALTER TABLE login_failures ADD KEY login_failures_window (window_start)',
    'DO 0');
PREPARE login_failures_window FROM @login_failures_window;
EXECUTE login_failures_window;
DEALLOCATE PREPARE login_failures_window;
SET @reset_tokens_expires = IF((SELECT count(*) FROM information_schema.statistics
        WHERE table_schema = DATABASE() AND table_name = 'reset_tokens' AND index_name = 'reset_tokens_expires') = 0,
    'ALTER TABLE reset_tokens ADD KEY reset_tokens_expires (expires_at)',
    'DO 0');
PREPARE reset_tokens_expires FROM @reset_tokens_expires;
EXECUTE reset_tokens_expires;
DEALLOCATE PREPARE reset_tokens_expires;
SET @evt_created = IF((SELECT count(*) FROM information_schema.statistics
        WHERE table_schema = DATABASE() AND table_name = 'email_verification_tokens' AND index_name = 'email_verification_tokens_created') = 0,
    'ALTER TABLE email_verification_tokens ADD KEY email_verification_tokens_created (created_at)',
    'DO 0');
PREPARE evt_created FROM @evt_created;
EXECUTE evt_created;
DEALLOCATE PREPARE evt_created;
-- What the purge before this one left where it could not finish, which the
-- purge above never finds: a session a day old with no unspent refresh
-- token, not revoked (ended here, as of its start: its access tokens have
-- expired), and a used code or redeemed device request whose session is
-- gone (deleted here). Each statement changes nothing the second time.
UPDATE token_families SET revoked_at = created_at WHERE revoked_at IS NULL AND created_at < UNIX_TIMESTAMP() - 86400
  AND NOT EXISTS (SELECT 1 FROM refresh_tokens rt WHERE rt.family_id = token_families.id AND rt.used_at IS NULL);
DELETE FROM auth_codes WHERE family_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM token_families f WHERE f.id = auth_codes.family_id);
DELETE FROM device_codes WHERE family_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM token_families f WHERE f.id = device_codes.family_id);
