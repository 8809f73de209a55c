-- Revocation cutoffs in milliseconds: with whole seconds, a token minted in
-- the same second as a revocation could not be told apart from one minted
-- before it. Access tokens carry their mint time in milliseconds in their jti.
ALTER TABLE revocations ADD COLUMN not_before_ms BIGINT NOT NULL DEFAULT 0;
UPDATE revocations SET not_before_ms = not_before * 1000 + 999;
