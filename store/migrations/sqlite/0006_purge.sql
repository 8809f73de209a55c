-- Indexes for the purge (every table bounded by what is live) and for the
-- per-account limit on password reset links.
CREATE INDEX token_families_created ON token_families (created_at);
CREATE INDEX reset_tokens_user ON reset_tokens (user_id, created_at);

-- At most one working reset link per account: a new one voids the old.
-- Links from before this keep only the newest.
UPDATE reset_tokens SET used_at = created_at
WHERE used_at IS NULL AND EXISTS (SELECT 1 FROM reset_tokens n WHERE n.user_id = reset_tokens.user_id AND n.used_at IS NULL
  AND (n.created_at > reset_tokens.created_at OR (n.created_at = reset_tokens.created_at AND n.hash > reset_tokens.hash)));
CREATE UNIQUE INDEX reset_tokens_one_live ON reset_tokens (user_id) WHERE used_at IS NULL;

-- not_before (whole seconds) gave way to not_before_ms in 0003 and is read
-- by nothing.
ALTER TABLE revocations DROP COLUMN not_before;
