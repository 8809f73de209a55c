-- Resource indicators (RFC 8707): the resource an authorization granted
-- (one of RESOURCES; '' for none: the ISSUER), carried from the code (or
-- the device request) to its session, whose tokens are all for it.
ALTER TABLE auth_codes ADD COLUMN resource TEXT NOT NULL DEFAULT '';
ALTER TABLE token_families ADD COLUMN resource TEXT NOT NULL DEFAULT '';
ALTER TABLE device_codes ADD COLUMN resource TEXT NOT NULL DEFAULT '';
