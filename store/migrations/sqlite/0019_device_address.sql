-- The address a device request came from (an IPv4 address or an IPv6
-- /64, as auth's per-address budgets key it): store.CreateDeviceCode caps
-- a public client's live requests per address as well as over all
-- addresses, so that one address cannot spend the client's whole cap.
-- Gone with the row (an hour after the request expires).
ALTER TABLE device_codes ADD COLUMN address TEXT NOT NULL DEFAULT '';
