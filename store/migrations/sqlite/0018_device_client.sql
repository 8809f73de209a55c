-- A client's live device requests are counted before each new one
-- (store.CreateDeviceCode caps them per client): the index makes that count
-- read only the client's rows, and a client's deletion find them.
CREATE INDEX device_codes_client ON device_codes (client_id, expires_at);
