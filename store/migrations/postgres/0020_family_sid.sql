-- The browser sign-in (its sid) whose code or device approval started a
-- refresh-token family, or '' (a REST login, a sign-in from before sids).
-- When the sign-in ends (RP-initiated logout, another user's sign-in in
-- its browser: store.endSignIn) its families end too (OIDC Back-Channel
-- Logout 1.0 §2.7: there is no offline_access). Codes name the family
-- until it is purged, device requests only for an hour: the family keeps
-- the sid itself. Families from before this take it from what started them.
ALTER TABLE token_families ADD COLUMN sid TEXT NOT NULL DEFAULT '';
CREATE INDEX token_families_sid ON token_families (sid);
UPDATE token_families SET sid = c.sid FROM auth_codes c WHERE c.family_id = token_families.id AND c.sid <> '';
UPDATE token_families SET sid = d.sid FROM device_codes d WHERE d.family_id = token_families.id AND d.sid <> '';
