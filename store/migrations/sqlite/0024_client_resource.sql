-- The resource a resource server is (RFC 7662 §4: the server must tell
-- whether a token can be used at the resource server that introspects
-- it): one of RESOURCES, whose tokens it may introspect, or '' for the
-- ISSUER, tokens for no resource, which every resource server from before
-- this one introspects.
ALTER TABLE clients ADD COLUMN resource TEXT NOT NULL DEFAULT '';
