-- Indexes for the purge (every table bounded by what is live) and for the
-- per-account limit on password reset links.
CREATE INDEX token_families_created ON token_families (created_at);
CREATE INDEX reset_tokens_user ON reset_tokens (user_id, created_at);
