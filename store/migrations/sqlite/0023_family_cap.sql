-- A user's live refresh-token families, by age: a new family counts
-- them (store.createFamilyTx: at most 1,000 live, the oldest beyond end),
-- and taking the account back revokes them (store.revokeFamiliesTx). The
-- index on user_id alone made both read every revoked family of the user
-- that waits for the purge too, as many as were started in the last
-- ACCESS_TOKEN_TTL. That one stays: on MySQL it is the foreign key's, and
-- an index of the key with revoked_at in it had each revocation check the
-- key, share-locking the user's row (a deadlock beside a code exchange).
CREATE INDEX token_families_user_revoked ON token_families (user_id, revoked_at, created_at);
