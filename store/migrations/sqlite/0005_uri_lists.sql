-- Redirect and post-logout URIs as JSON arrays: a space-joined list read
-- back with a whitespace splitter would split on characters registration
-- never saw as separators (U+00A0, U+2028...). Rows written before this
-- were joined with one ASCII space, so that is the only separator here;
-- an element holding any other space stays whole (and never matches).
-- SQLite has no split function: a recursive CTE cuts at each space.
UPDATE clients SET redirect_uris = (
  WITH RECURSIVE cut(part, rest) AS (
    SELECT '', clients.redirect_uris || ' '
    UNION ALL
    SELECT substr(rest, 1, instr(rest, ' ') - 1), substr(rest, instr(rest, ' ') + 1) FROM cut WHERE rest <> ''
  )
  SELECT json_group_array(part) FROM cut WHERE part <> '');
UPDATE clients SET post_logout_redirect_uris = (
  WITH RECURSIVE cut(part, rest) AS (
    SELECT '', clients.post_logout_redirect_uris || ' '
    UNION ALL
    SELECT substr(rest, 1, instr(rest, ' ') - 1), substr(rest, instr(rest, ' ') + 1) FROM cut WHERE rest <> ''
  )
  SELECT json_group_array(part) FROM cut WHERE part <> '');
