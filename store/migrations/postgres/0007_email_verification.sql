-- Email verification. Existing users start unverified: nothing has shown
-- that they control their address. Any write of users.email must set
-- email_verified back to FALSE (API.md: changing the email makes it
-- unverified again); a link also works only for the address it was made
-- for (VerifyEmail compares them), so an older link cannot verify a new one.
ALTER TABLE users ADD COLUMN email_verified BOOLEAN NOT NULL DEFAULT FALSE;

-- Verification links, stored only as SHA-256 hex; used_at set means spent.
CREATE TABLE email_verification_tokens (
    hash       TEXT    PRIMARY KEY,
    user_id    BIGINT  NOT NULL REFERENCES users (id),
    email      TEXT    NOT NULL,              -- the address the link was mailed to
    created_at BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL,
    used_at    BIGINT
);
-- For the per-account hourly limit and the purge.
CREATE INDEX email_verification_tokens_user ON email_verification_tokens (user_id, created_at);
-- At most one working link per account: a new one voids the old.
CREATE UNIQUE INDEX email_verification_tokens_one_live ON email_verification_tokens (user_id) WHERE used_at IS NULL;
