-- The hash of the cookie a browser sign-in had before the same user signed
-- in again in that browser (store.Session.Continues: same sid, new
-- cookie), or ''. Only a logout reads it: one sent with the old cookie,
-- beside the new sign-in, still ends the sign-in (store.DeleteSession).
ALTER TABLE sessions ADD COLUMN prev_hash TEXT NOT NULL DEFAULT '';
CREATE INDEX sessions_prev_hash ON sessions (prev_hash);
