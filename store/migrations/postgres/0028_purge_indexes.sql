-- Each purge statement reads through an index the rows it may delete, not
-- the live ones among them (store.Purge). A dead session (refresh-token
-- family) is found as revoked, or as older than REFRESH_TOKEN_MAX_DAYS,
-- and its codes go with it, by its id (the revoked alone are indexed: the
-- live ones' revoked_at IS NULL is read by their user's or client's index): the purge read every family and
-- every used code to find the few dead, and past a million live sessions
-- its statements passed OpTimeout run after run, so nothing was purged.
-- An unused code by (family_id NULL, expiry), which auth_codes_expires
-- served only for the purge. Sessions, login counts and mail links had no
-- index for their expiry: each purge read the whole table.
CREATE INDEX token_families_revoked ON token_families (revoked_at) WHERE revoked_at IS NOT NULL;
CREATE INDEX auth_codes_unused ON auth_codes (family_id, expires_at);
DROP INDEX auth_codes_expires;
CREATE INDEX device_codes_unused ON device_codes (family_id, expires_at);
CREATE INDEX sessions_expires ON sessions (expires_at);
CREATE INDEX login_failures_window ON login_failures (window_start);
CREATE INDEX reset_tokens_expires ON reset_tokens (expires_at);
CREATE INDEX email_verification_tokens_created ON email_verification_tokens (created_at);
