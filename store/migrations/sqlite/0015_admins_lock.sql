-- The admins' row of cap_locks: every change an admin makes to a user's
-- role, active flag or deletion updates it first, then checks that the
-- admin is still an active admin (store.asAdmin), so that concurrent ones
-- check one after another and never leave no active admin.
INSERT INTO cap_locks (name) VALUES ('admins');
