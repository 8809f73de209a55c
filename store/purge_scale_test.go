package store_test

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"oauth2-api/store"
	"oauth2-api/store/storetest"
)

// TestPurgeAtScale prints what a purge costs beside many live sessions, and
// checks that the dead ones go: PURGE_SCALE_N live sessions (a family with
// an unspent refresh token and the used code that started it, made a day
// ago) and ten revoked ones. Skipped without PURGE_SCALE_N, which a run
// sets to measure (it loads that many rows into each database):
//
//	PURGE_SCALE_N=1000000 go test -run TestPurgeAtScale -v ./store
//
// Before migration 0028 the purge read every live family to find the dead,
// and from about a million on MariaDB its statements passed OpTimeout.
func TestPurgeAtScale(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("PURGE_SCALE_N"))
	if n <= 0 {
		t.Skip("PURGE_SCALE_N unset: a measurement, not a check of every run")
	}
	now := time.Now()
	day, exp := now.Add(-24*time.Hour).Unix(), now.Add(30*24*time.Hour).Unix()
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			url := storetest.URL(t, d)
			db, raw := storetest.OpenURL(t, url), rawDB(t, d, url)
			u := newUser(t, db, "ann@example.com", "ann")
			if err := db.CreateClient(ctx, 0, &store.Client{ID: "c1", Name: "x", GrantTypes: []string{"authorization_code"}}, t0); err != nil {
				t.Fatal(err)
			}
			seq := map[string]string{
				store.Postgres: `SELECT g FROM generate_series(1, $N) g`,
				store.MySQL:    `SELECT seq AS g FROM seq_1_to_$N`,
				store.SQLite:   `WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g+1 FROM s WHERE g < $N) SELECT g FROM s`,
			}[d]
			id := func(prefix string) string {
				if d == store.MySQL {
					return "concat('" + prefix + "', g)"
				}
				return "'" + prefix + "' || g"
			}
			r := strings.NewReplacer("$N", strconv.Itoa(n), "$U", strconv.FormatInt(u.ID, 10), "$D", strconv.FormatInt(day, 10),
				"$E", strconv.FormatInt(exp, 10), "$F", id("f"), "$T", id("t"), "$C", id("c"), "$X", id("dead"), "$Y", id("deadt"))
			start := time.Now()
			for _, q := range []string{
				`INSERT INTO token_families (id, user_id, client_id, scope, auth_time, created_at) SELECT $F, $U, 'c1', '', $D, $D FROM (SEQ) s`,
				`INSERT INTO refresh_tokens (hash, family_id, scope, created_at, expires_at) SELECT $T, $F, '', $D, $E FROM (SEQ) s`,
				`INSERT INTO auth_codes (hash, client_id, user_id, redirect_uri, code_challenge, auth_time, created_at, expires_at, used_at, family_id)
SELECT $C, 'c1', $U, 'x', 'x', $D, $D, $D, $D, $F FROM (SEQ) s`,
				`INSERT INTO token_families (id, user_id, client_id, scope, auth_time, created_at, revoked_at) SELECT $X, $U, 'c1', '', $D, $D, $D FROM (SEQ) s WHERE g <= 10`,
				`INSERT INTO refresh_tokens (hash, family_id, scope, created_at, expires_at, used_at) SELECT $Y, $X, '', $D, $E, $D FROM (SEQ) s WHERE g <= 10`,
			} {
				if _, err := raw.Exec(r.Replace(strings.Replace(q, "SEQ", seq, 1))); err != nil {
					t.Fatal(err)
				}
			}
			if d != store.SQLite {
				raw.Exec(map[string]string{store.Postgres: "ANALYZE", store.MySQL: "ANALYZE TABLE token_families, refresh_tokens, auth_codes"}[d])
			}
			t.Logf("%s: %d live sessions loaded in %v", d, n, time.Since(start).Round(time.Millisecond))
			start = time.Now()
			err := db.Purge(ctx, store.Retention{LoginWindow: time.Hour, AccessTTL: time.Hour, MaxAge: 90 * 24 * time.Hour, Audit: 365 * 24 * time.Hour}, now)
			t.Logf("%s: purge beside %d live sessions took %v", d, n, time.Since(start).Round(time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			if dead, live := count(t, raw, "token_families WHERE revoked_at IS NOT NULL"), count(t, raw, "token_families"); dead != 0 || live != n {
				t.Errorf("after the purge: %d of 10 dead sessions left, %d sessions in all; want none dead, %d live", dead, live, n)
			}
		})
	}
}
