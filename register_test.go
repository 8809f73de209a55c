package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"oauth2-api/auth"
	"oauth2-api/store"
	"oauth2-api/token"
)

func TestLoadConfigDynamicRegistration(t *testing.T) {
	for in, want := range map[string]string{"": "false", "false": "false", "token": "token", "open": "open", " open ": "open"} {
		c, err := loadConfig(envOf(map[string]string{"ENABLE_DYNAMIC_REGISTRATION": in}))
		if err != nil || c.DynamicRegistration != want {
			t.Errorf("ENABLE_DYNAMIC_REGISTRATION=%q: %q, %v; want %q", in, c.DynamicRegistration, err, want)
		}
	}
	for _, in := range []string{"true", "yes", "TOKEN", "closed"} {
		_, err := loadConfig(envOf(map[string]string{"ENABLE_DYNAMIC_REGISTRATION": in}))
		if err == nil || !strings.HasPrefix(err.Error(), "ENABLE_DYNAMIC_REGISTRATION: ") {
			t.Errorf("ENABLE_DYNAMIC_REGISTRATION=%q: %v; want an error naming the variable", in, err)
		}
	}
}

// `client registration-token` prints a live initial access token whose
// hash alone is stored, and audits it; `client list` marks registered clients, and
// `client delete` deletes them.
func TestRunClientRegistrationToken(t *testing.T) {
	env := testEnv(t)
	out, _, err := runCmd(t, env, "", "client", "registration-token", "--ttl", "2h")
	var got struct {
		Token   string    `json:"initial_access_token"`
		Expires time.Time `json:"expires_at"`
	}
	if err != nil || json.Unmarshal([]byte(out), &got) != nil || len(got.Token) != token.OpaqueLen {
		t.Fatalf("client registration-token = %q, %v; want a JSON object with a 256-bit token", out, err)
	}
	if d := time.Until(got.Expires); d < 119*time.Minute || d > 2*time.Hour {
		t.Fatalf("expires_at %v is %v away; want 2h (--ttl)", got.Expires, d)
	}
	for _, args := range [][]string{{"--ttl", "10s"}, {"--ttl", "721h"}, {"--ttl", "soon"}, {"extra"}} {
		_, _, err := runCmd(t, env, "", append([]string{"client", "registration-token"}, args...)...)
		if exitCode(err) != 2 || strings.Contains(err.Error(), "\n") {
			t.Errorf("client registration-token %q = %v; want one line, exit 2", args, err)
		}
	}
	// Its one event (the usage errors wrote nothing) is by the CLI and holds neither the token nor its hash.
	out, _, err = runCmd(t, env, "", "audit", "list", "--action", "client.registration_token_issued")
	if err != nil || strings.Count(out, "\n") != 1 || !strings.Contains(out, `"actor":"cli"`) || strings.Contains(out, got.Token) || strings.Contains(out, token.Hash(got.Token)) {
		t.Fatalf("audit list = %q, %v; want one event by cli, without the token", out, err)
	}
	db, err := store.Open(context.Background(), env["DATABASE_URL"], store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Now()
	if err := db.RegistrationTokenLive(context.Background(), token.Hash(got.Token), now); err != nil {
		t.Fatalf("the printed token is not live: %v", err)
	}
	reg := &store.Client{ID: "self-registered", Name: "agent", GrantTypes: []string{"authorization_code"},
		RedirectURIs: []string{"https://a.example/cb"}, RegistrationHash: token.Hash("rat"), AuthMethod: "none"}
	if err := db.RegisterClient(context.Background(), reg, token.Hash(got.Token), auth.MaxRegisteredClients, now); err != nil {
		t.Fatal(err)
	}
	runCmd(t, env, "", "client", "create", "--name", "plain", "--grant-type", "client_credentials")
	out, _, err = runCmd(t, env, "", "client", "list")
	if err != nil || strings.Count(out, `"registered":true`) != 1 || strings.Count(out, `"registered":false`) != 1 ||
		!strings.Contains(out, `"client_id":"self-registered"`) {
		t.Fatalf("client list = %q, %v; want the registered client marked and the other not", out, err)
	}
	if out, _, err := runCmd(t, env, "", "client", "delete", "self-registered"); err != nil || !strings.HasPrefix(out, "deleted") {
		t.Fatalf("client delete of a registered client = %q, %v", out, err)
	}
}
