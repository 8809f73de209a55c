-- A deleted user keeps its row (soft delete: its families, codes and
-- audit events name its id), but nothing that names or authenticates a
-- person once nothing needs it: the deletion blanks the password hash and
-- the names (store.DeleteUser), as done here for earlier deletions, and the
-- purge replaces the email and username with 'deleted:<id>' once the
-- deletion is older than the audit retention (store.Purge). This index
-- holds the deleted users still named (every email has an '@', no
-- replacement does), so that each purge reads those alone.
UPDATE users SET password_hash = '', first_name = '', last_name = '' WHERE deleted_at IS NOT NULL;
CREATE INDEX users_deleted_named ON users (deleted_at) WHERE deleted_at IS NOT NULL AND email LIKE '%@%';
