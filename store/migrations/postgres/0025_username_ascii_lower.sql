-- lower() follows the database's collation: under a Turkish or Azeri one,
-- lower('I') is the dotless 'ı', so KIM and kim were two accounts (the
-- other dialects refuse the second), and a login by username, lower-cased
-- in Go, missed KIM. Usernames are ASCII: they are lowered under "C", as
-- Go lowers them, whatever the database's collation (store.liveUserWhere).
-- A database that holds two such accounts already fails here, and the
-- operator decides which keeps the name.
DROP INDEX users_username_live;
CREATE UNIQUE INDEX users_username_live ON users (lower(username COLLATE "C")) WHERE deleted_at IS NULL;
