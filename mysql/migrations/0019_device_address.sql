-- The address a device request came from; see
-- migrations/postgres/0019_device_address.sql in store. One ALTER, run only
-- while device_codes has no address (as in 0016), so that the migration
-- can run again.
SET @device_address = IF((SELECT count(*) FROM information_schema.columns
        WHERE table_schema = DATABASE() AND table_name = 'device_codes' AND column_name = 'address') = 0,
    'ALTER TABLE device_codes ADD COLUMN address VARBINARY(64) NOT NULL DEFAULT ''''',
    'DO 0');
PREPARE device_address FROM @device_address;
EXECUTE device_address;
DEALLOCATE PREPARE device_address;
