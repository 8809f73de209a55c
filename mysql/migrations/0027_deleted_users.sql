-- A deleted user's password hash and names blanked, and an index of the
-- deleted users whose email and username the purge has still to replace;
-- see migrations/postgres/0027_deleted_users.sql in store. MySQL has no
-- partial index: named_deleted is deleted_at for those rows, NULL for the
-- others, and indexed. The UPDATE changes nothing the second time, and the
-- ALTER runs only while users has no such column (as in 0016), so that the
-- migration can run again.
UPDATE users SET password_hash = '', first_name = '', last_name = '' WHERE deleted_at IS NOT NULL;
SET @deleted_named = IF((SELECT count(*) FROM information_schema.columns
        WHERE table_schema = DATABASE() AND table_name = 'users' AND column_name = 'named_deleted') = 0,
    'ALTER TABLE users ADD COLUMN named_deleted BIGINT AS (CASE WHEN email LIKE ''%@%'' THEN deleted_at END) STORED, ADD KEY users_named_deleted (named_deleted)',
    'DO 0');
PREPARE deleted_named FROM @deleted_named;
EXECUTE deleted_named;
DEALLOCATE PREPARE deleted_named;
