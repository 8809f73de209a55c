-- The columns rows are deleted or updated by, beside their keys, so that
-- each such statement reads only its rows, not the whole table: a
-- sign-in's unused codes and approved device requests by its sid, and a
-- user's approved requests by user_id, each while the user's row is held
-- (store.endSignInsTx, endGoneSignInTx: a logout with any old ID token of
-- the sign-in); a client's families by client_id (store.DeleteClient, which
-- a registrant may call), and its codes, consents and pushed requests,
-- which go with it (ON DELETE CASCADE) by client_id. MySQL had each but
-- token_families_client (InnoDB indexes every foreign key's column).
CREATE INDEX auth_codes_sid ON auth_codes (sid);
CREATE INDEX device_codes_sid ON device_codes (sid);
CREATE INDEX device_codes_user ON device_codes (user_id);
CREATE INDEX token_families_client ON token_families (client_id);
CREATE INDEX auth_codes_client ON auth_codes (client_id);
CREATE INDEX consents_client ON consents (client_id);
CREATE INDEX pushed_requests_client ON pushed_requests (client_id);
