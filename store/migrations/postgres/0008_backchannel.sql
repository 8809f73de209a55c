-- OpenID Connect Back-Channel Logout 1.0. A browser sign-in gets a public
-- id, the sid of its ID tokens and logout tokens (the cookie's hash stays
-- secret); session_clients records the clients each sign-in issued codes
-- to, so that when it ends each of them with a back-channel URI is told.
ALTER TABLE clients ADD COLUMN backchannel_logout_uri TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN sid TEXT NOT NULL DEFAULT '';
ALTER TABLE auth_codes ADD COLUMN sid TEXT NOT NULL DEFAULT '';
CREATE TABLE session_clients (
    session_hash TEXT NOT NULL REFERENCES sessions (hash) ON DELETE CASCADE,
    client_id    TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    PRIMARY KEY (session_hash, client_id)
);
CREATE INDEX session_clients_client ON session_clients (client_id);
-- Logout from a relying party's back end finds the sign-in by its sid.
CREATE INDEX sessions_sid ON sessions (sid);
