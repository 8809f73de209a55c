-- Redirect and post-logout URIs as JSON arrays: a space-joined list read
-- back with a whitespace splitter would split on characters registration
-- never saw as separators (U+00A0, U+2028...). Rows written before this
-- were joined with one ASCII space, so that is the only separator here;
-- an element holding any other space stays whole (and never matches).
UPDATE clients SET
  redirect_uris = COALESCE((SELECT json_agg(u)::text FROM unnest(string_to_array(redirect_uris, ' ')) AS u WHERE u <> ''), '[]'),
  post_logout_redirect_uris = COALESCE((SELECT json_agg(u)::text FROM unnest(string_to_array(post_logout_redirect_uris, ' ')) AS u WHERE u <> ''), '[]');
ALTER TABLE clients ALTER COLUMN redirect_uris SET DEFAULT '[]';
ALTER TABLE clients ALTER COLUMN post_logout_redirect_uris SET DEFAULT '[]';
