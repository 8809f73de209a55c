-- The purge deletes expired unspent refresh tokens (store.Purge); a spent
-- one stays with its family while the family lives, so that presented
-- again, even after its expiry, it ends the session (RFC 9700 §4.14.2).
-- On the index of every token's expiry, each purge read past all the
-- expired spent ones, as many as a family rotated in
-- REFRESH_TOKEN_MAX_DAYS, to find the few unspent: an index of the unspent
-- alone, which nothing else read by expiry, takes its place.
DROP INDEX refresh_tokens_expires;
CREATE INDEX refresh_tokens_unspent ON refresh_tokens (expires_at) WHERE used_at IS NULL;
