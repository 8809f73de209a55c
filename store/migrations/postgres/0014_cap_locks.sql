-- One row per cap that counts, then inserts: its transaction updates the
-- row before it counts, so that concurrent ones queue there (each then
-- counts what the one before it stored) and no other write waits. Rows:
-- 'registration', the cap on dynamically registered clients
-- (store.RegisterClient).
CREATE TABLE cap_locks (
    name TEXT PRIMARY KEY
);
INSERT INTO cap_locks (name) VALUES ('registration');
