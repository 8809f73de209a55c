package interop

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The same DPoP + PAR flow with panva's oauth4webapi (npm), a widely used
// certified OAuth 2.0 / OpenID Connect client, in a node script
// (testdata/oauth4webapi/flow.mjs) this test drives: the script pushes the
// request with a proof, this test plays the person at the browser, and the
// script exchanges the code, calls UserInfo and /api/v1/profile, and
// refreshes, all with its own DPoP key. The package is pinned by
// package-lock.json and installed with npm ci into a temporary directory.
// Without node (v20 or later) or npm, or when npm cannot fetch the package,
// the test is skipped; with CI set, a missing node or npm fails it, and so
// does a failed install while the registry is reachable.

// installOAuth4WebAPI copies testdata/oauth4webapi to a temporary
// directory and installs its pinned package there with npm ci.
func installOAuth4WebAPI(t *testing.T) string {
	t.Helper()
	skip := t.Skipf
	if os.Getenv("CI") != "" { // CI's machine has them (Node.js v20): a missing one is a failure there
		skip = t.Fatalf
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		skip("npm not installed")
	}
	v, err := exec.Command("node", "--version").Output()
	major, _ := strconv.Atoi(strings.TrimPrefix(strings.Split(strings.TrimSpace(string(v)), ".")[0], "v"))
	if err != nil || major < 20 {
		skip("node %q: want v20 or later (fetch, WebCrypto Ed25519)", v)
	}
	dir := t.TempDir()
	for _, f := range []string{"package.json", "package-lock.json", "flow.mjs"} {
		b, err := os.ReadFile(filepath.Join("testdata", "oauth4webapi", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err == nil {
		return dir
	}
	ping, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if os.Getenv("CI") != "" && exec.CommandContext(ping, npm, "ping", "--loglevel=error").Run() == nil {
		t.Fatalf("npm ci failed although the registry answers: %v\n%s", err, out)
	}
	t.Skipf("npm cannot fetch oauth4webapi (offline?): %v: %s", err, strings.TrimSpace(string(out)))
	return ""
}

// TestDPoPOAuth4WebAPI runs flow.mjs for an ES256, an Ed25519 (RFC 9864's
// alg name, which oauth4webapi sends) and an RS256 key, against a server
// that requires DPoP nonces, and checks what it reports against the server:
// the token bound to the thumbprint of the library's key (introspection's
// cnf.jkt), UserInfo and the profile read with proofs, the refreshed token
// bound to the same key, and the push retried once after use_dpop_nonce.
func TestDPoPOAuth4WebAPI(t *testing.T) {
	dir := installOAuth4WebAPI(t)
	s, app, _, rs := dpopServer(t, map[string]string{"DPOP_NONCE": "true"})
	for _, alg := range []string{"ES256", "Ed25519", "RS256"} {
		t.Run(alg, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, "node", "flow.mjs", s.URL, app.ID, dpopRedirect, alg)
			cmd.Dir = dir
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Wait()
			defer stdin.Close()
			out := bufio.NewReader(stdout)
			next := func(v any) {
				t.Helper()
				line, err := out.ReadBytes('\n')
				if err == nil {
					err = json.Unmarshal(line, v)
				}
				if err != nil {
					stdin.Close()
					cmd.Wait()
					t.Fatalf("flow.mjs: %v\nstdout %q\nstderr:\n%s", err, line, stderr.String())
				}
			}

			var step struct {
				Authorize    string `json:"authorize"`
				RequestURI   string `json:"request_uri"`
				CodeVerifier string `json:"code_verifier"`
			}
			next(&step)
			s.noLog(step.RequestURI, step.CodeVerifier)
			u, err := url.Parse(step.Authorize)
			if err != nil || len(u.Query()) != 2 || u.Query().Get("client_id") != app.ID || u.Query().Get("request_uri") != step.RequestURI {
				t.Fatalf("oauth4webapi's authorization URL %q; want only client_id and request_uri", step.Authorize)
			}
			res := newUserAgent(t, s).authorize(step.Authorize, "ada", password, "allow")
			s.noLog(res.Query.Get("code"))
			if _, err := io.WriteString(stdin, res.Location.String()+"\n"); err != nil {
				t.Fatal(err)
			}

			var r struct {
				Result struct {
					TokenType             string `json:"token_type"`
					AccessToken           string `json:"access_token"`
					RefreshToken          string `json:"refresh_token"`
					IDToken               string `json:"id_token"`
					Sub                   string `json:"sub"`
					UserinfoSub           string `json:"userinfo_sub"`
					ProfileStatus         int    `json:"profile_status"`
					ProfileUsername       string `json:"profile_username"`
					RefreshedTokenType    string `json:"refreshed_token_type"`
					RefreshedAccessToken  string `json:"refreshed_access_token"`
					RefreshedRefreshToken string `json:"refreshed_refresh_token"`
					Userinfo2Sub          string `json:"userinfo2_sub"`
					JKT                   string `json:"jkt"`
					NonceRetries          int    `json:"nonce_retries"`
				} `json:"result"`
			}
			next(&r)
			x := &r.Result
			s.noLog(x.AccessToken, x.RefreshToken, x.IDToken, x.RefreshedAccessToken, x.RefreshedRefreshToken)
			stdin.Close()
			if err := cmd.Wait(); err != nil {
				t.Fatalf("flow.mjs: %v\n%s", err, stderr.String())
			}

			if !strings.EqualFold(x.TokenType, "DPoP") || !strings.EqualFold(x.RefreshedTokenType, "DPoP") {
				t.Errorf("token_type %q, after refresh %q; want DPoP", x.TokenType, x.RefreshedTokenType)
			}
			if x.JKT == "" {
				t.Fatalf("flow.mjs reported no key thumbprint")
			}
			for what, tok := range map[string]string{"access token": x.AccessToken, "refreshed access token": x.RefreshedAccessToken} {
				if active, jkt := introspectJKT(t, s, rs, tok); !active || jkt != x.JKT {
					t.Errorf("introspection of the %s: active %v, cnf.jkt %q; want active and oauth4webapi's key %q", what, active, jkt, x.JKT)
				}
			}
			if x.Sub == "" || x.UserinfoSub != x.Sub || x.Userinfo2Sub != x.Sub || x.ProfileStatus != 200 || x.ProfileUsername != "ada" {
				t.Errorf("sub %q, UserInfo sub %q then %q, profile %d %q; want one sub, 200 and ada", x.Sub, x.UserinfoSub, x.Userinfo2Sub, x.ProfileStatus, x.ProfileUsername)
			}
			if x.RefreshedRefreshToken == "" || x.RefreshedRefreshToken == x.RefreshToken {
				t.Errorf("refresh did not rotate the refresh token")
			}
			if x.NonceRetries != 1 {
				t.Errorf("oauth4webapi retried %d times after use_dpop_nonce; want 1 (the push; then it has the nonce)", x.NonceRetries)
			}
		})
	}
}
