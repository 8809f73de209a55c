-- The browser sign-in (its sid) that started a refresh-token family; see
-- migrations/postgres/0020_family_sid.sql in store. One ALTER, run only
-- while token_families has no sid (as in 0016), so that the migration can
-- run again; the updates change nothing the second time.
SET @family_sid = IF((SELECT count(*) FROM information_schema.columns
        WHERE table_schema = DATABASE() AND table_name = 'token_families' AND column_name = 'sid') = 0,
    'ALTER TABLE token_families ADD COLUMN sid VARBINARY(255) NOT NULL DEFAULT '''', ADD KEY token_families_sid (sid)',
    'DO 0');
PREPARE family_sid FROM @family_sid;
EXECUTE family_sid;
DEALLOCATE PREPARE family_sid;
UPDATE token_families f JOIN auth_codes c ON c.family_id = f.id SET f.sid = c.sid WHERE c.sid <> '';
UPDATE token_families f JOIN device_codes d ON d.family_id = f.id SET f.sid = d.sid WHERE d.sid <> '';
