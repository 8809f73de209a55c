-- A user's live refresh-token families; see
-- migrations/postgres/0023_family_cap.sql in store (token_families_user
-- stays the foreign key's index). One ALTER, run only while token_families
-- has no such index (as in 0016), so that the migration can run again.
SET @family_cap = IF((SELECT count(*) FROM information_schema.statistics
        WHERE table_schema = DATABASE() AND table_name = 'token_families' AND index_name = 'token_families_user_revoked') = 0,
    'ALTER TABLE token_families ADD KEY token_families_user_revoked (user_id, revoked_at, created_at)',
    'DO 0');
PREPARE family_cap FROM @family_cap;
EXECUTE family_cap;
DEALLOCATE PREPARE family_cap;
