-- Dynamic client registration (RFC 7591) and its management (RFC 7592).
-- A client that registered itself keeps the SHA-256 of its registration
-- access token (NULL for a client an administrator made: the column also
-- marks registered clients) and the token_endpoint_auth_method it asked for.
ALTER TABLE clients ADD COLUMN registration_hash TEXT;
ALTER TABLE clients ADD COLUMN token_endpoint_auth_method TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX clients_registration_hash ON clients (registration_hash);

-- Initial access tokens (RFC 7591 §3) made by `oauth2-api client
-- registration-token`, by their SHA-256; the registration they allow
-- deletes them (single use), and the purge deletes them at expiry.
CREATE TABLE registration_tokens (
    hash       TEXT   PRIMARY KEY,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX registration_tokens_expires ON registration_tokens (expires_at);
