-- One row per cap that counts, then inserts: its transaction updates the
-- row before it counts, so that concurrent ones queue there (each then
-- counts what the one before it stored) and no other write waits. Rows:
-- 'registration', the cap on dynamically registered clients
-- (store.RegisterClient).
CREATE TABLE IF NOT EXISTS cap_locks (
    name VARBINARY(64) NOT NULL PRIMARY KEY
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
-- Run again, this insert changes nothing.
INSERT INTO cap_locks (name) VALUES ('registration') ON DUPLICATE KEY UPDATE name = name;
