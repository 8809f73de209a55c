-- A client's live device requests are counted before each new one
-- (store.CreateDeviceCode caps them per client): the index makes that count
-- read only the client's rows. One ALTER, run only while device_codes has
-- no such index (as in 0016), so that the migration can run again.
SET @device_client = IF((SELECT count(*) FROM information_schema.statistics
        WHERE table_schema = DATABASE() AND table_name = 'device_codes' AND index_name = 'device_codes_client') = 0,
    'ALTER TABLE device_codes ADD KEY device_codes_client (client_id, expires_at)',
    'DO 0');
PREPARE device_client FROM @device_client;
EXECUTE device_client;
DEALLOCATE PREPARE device_client;
