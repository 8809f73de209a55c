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
-- What the purge before this one left where it could not finish, which the
-- purge above never finds: a session a day old with no unspent refresh
-- token, not revoked (ended here, as of its start: its access tokens have
-- expired), and a used code or redeemed device request whose session is
-- gone (deleted here). Each statement changes nothing the second time.
UPDATE token_families SET revoked_at = created_at WHERE revoked_at IS NULL AND created_at < extract(epoch from now())::bigint - 86400
  AND NOT EXISTS (SELECT 1 FROM refresh_tokens rt WHERE rt.family_id = token_families.id AND rt.used_at IS NULL);
DELETE FROM auth_codes WHERE family_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM token_families f WHERE f.id = auth_codes.family_id);
DELETE FROM device_codes WHERE family_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM token_families f WHERE f.id = device_codes.family_id);
