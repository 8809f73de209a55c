package fuzz

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"oauth2-api/auth"
	"oauth2-api/httpx"
	"oauth2-api/metrics"
	"oauth2-api/ratelimit"
	"oauth2-api/store/storetest"
	"oauth2-api/token"
)

type server struct {
	h              http.Handler
	clientID       string
	clientSecret   string
	publicClientID string
}

// newServer is the whole handler over a SQLite file, with one confidential
// and one public client.
func newServer(t testing.TB) *server {
	db := storetest.Open(t, "sqlite")
	key := token.NewHMACKey([]byte("fuzz-secret-fuzz-secret-fuzz-secret!!"))
	signer, _ := token.NewSigner(key)
	verifier, _ := token.NewVerifier(key)
	reg := metrics.NewRegistry()
	clients := auth.NewClients(db, time.Minute, 100, 1<<20)
	browser, err := auth.NewBrowser(false, []byte("k"), time.Hour, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	d := auth.Deps{
		Log: slog.New(slog.NewJSONHandler(io.Discard, nil)), DB: db,
		Tokens: &auth.Tokens{Issuer: "https://as.example", AccessTTL: time.Hour, RefreshTTL: time.Hour, MaxAge: 24 * time.Hour,
			Signer: signer, Verifier: verifier, Revoked: auth.NewRevocations(clients.Forget)},
		Passwords: auth.NewPasswords(auth.Argon2Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}, 2, time.Second),
		Throttle:  auth.Throttle{Max: 5, Window: time.Minute},
		Metrics:   auth.NewMetrics(reg), HTTP: httpx.NewMetrics(reg), Registry: reg,
		API: ratelimit.New(rate.Limit(1e9), 1<<30, 100), Creds: ratelimit.New(rate.Limit(1e9), 1<<30, 100),
		Pages: ratelimit.New(rate.Limit(1e9), 1<<30, 100), PerClient: ratelimit.NewNamed(rate.Limit(1e9), 1<<30, 100),
		PublicClients: ratelimit.NewNamed(rate.Limit(1e9), 1<<30, 100),
		Now:           time.Now, Version: "fuzz", Started: time.Now(), Clients: clients, Browser: browser,
	}
	now := time.Now()
	c, secret, err := auth.CreateClient(context.Background(), db, 0, auth.ClientSpec{Name: "c", RedirectURIs: []string{"https://app.example/cb"},
		GrantTypes: []string{"authorization_code", "refresh_token", "client_credentials"}, Scopes: []string{"read", "write"}}, false, nil, now)
	if err != nil {
		t.Fatal(err)
	}
	pub, _, err := auth.CreateClient(context.Background(), db, 0, auth.ClientSpec{Name: "p", Public: true, RedirectURIs: []string{"http://127.0.0.1/cb"}}, false, nil, now)
	if err != nil {
		t.Fatal(err)
	}
	return &server{h: auth.NewHandler(d), clientID: c.ID, clientSecret: secret, publicClientID: pub.ID}
}

func (s *server) serve(r *http.Request) *httptest.ResponseRecorder {
	r.RemoteAddr = "192.0.2.1:1"
	w := httptest.NewRecorder()
	s.h.ServeHTTP(w, r)
	return w
}

// FuzzTokenEndpoint posts arbitrary form bodies (with and without the
// client's credentials) to /oauth2/token: never a 5xx, always a JSON body
// that is either a token response or an RFC 6749 §5.2 error, always no-store.
func FuzzTokenEndpoint(f *testing.F) {
	s := newServer(f)
	for _, b := range []string{
		"grant_type=client_credentials",
		"grant_type=client_credentials&scope=read",
		"grant_type=client_credentials&grant_type=client_credentials",
		"grant_type=authorization_code&code=abc&redirect_uri=https://app.example/cb&code_verifier=" + strings.Repeat("a", 43),
		"grant_type=refresh_token&refresh_token=" + strings.Repeat("A", 43),
		"grant_type=password&username=a&password=b",
		"grant_type=%zz", "grant_type=client_credentials&scope=%FF", "client_id=x&client_secret=y&grant_type=client_credentials",
		"grant_type=client_credentials&scope=" + strings.Repeat("a ", 2000),
	} {
		f.Add(b, true)
		f.Add(b, false)
	}
	f.Fuzz(func(t *testing.T, body string, basic bool) {
		r := httptest.NewRequest("POST", "/oauth2/token", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if basic {
			r.SetBasicAuth(s.clientID, s.clientSecret)
		}
		w := s.serve(r)
		if w.Code >= 500 {
			t.Fatalf("POST /oauth2/token %q: %d %s", body, w.Code, w.Body.String())
		}
		if w.Header().Get("Cache-Control") != "no-store" {
			t.Fatalf("%q: no Cache-Control: no-store", body)
		}
		var m map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
			t.Fatalf("%q: body is not JSON: %q", body, w.Body.String())
		}
		if w.Code == 200 {
			if m["access_token"] == nil || m["token_type"] != "Bearer" {
				t.Fatalf("%q: 200 without a token: %v", body, m)
			}
			form, _ := url.ParseQuery(body)
			if !basic && form.Get("client_secret") != s.clientSecret {
				t.Fatalf("%q: a token without client authentication: %v", body, m)
			}
			return
		}
		if e, _ := m["error"].(string); e == "" {
			t.Fatalf("%q: %d without an error code: %v", body, w.Code, m)
		}
	})
}

// FuzzAuthorize sends arbitrary query strings to /oauth2/authorize: never a
// 5xx, and a redirect only ever to the client's registered URI.
func FuzzAuthorize(f *testing.F) {
	s := newServer(f)
	ch := base64.RawURLEncoding.EncodeToString(make([]byte, 32))
	for _, q := range []string{
		"response_type=code&client_id=" + s.clientID + "&redirect_uri=https://app.example/cb&code_challenge=" + ch + "&code_challenge_method=S256&state=x",
		"response_type=code&client_id=" + s.clientID + "&redirect_uri=https://evil.example/cb",
		"response_type=token&client_id=" + s.clientID,
		"client_id=" + s.publicClientID + "&redirect_uri=http://127.0.0.1:9/cb&response_type=code",
		"client_id=" + s.clientID + "&client_id=" + s.clientID,
		"client_id=%00", "redirect_uri=javascript:alert(1)&client_id=" + s.clientID, "",
	} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.URL.Path, r.URL.RawQuery = "/oauth2/authorize", q
		w := s.serve(r)
		if w.Code >= 500 {
			t.Fatalf("GET /oauth2/authorize?%s: %d", q, w.Code)
		}
		if loc := w.Header().Get("Location"); loc != "" {
			u, err := url.Parse(loc)
			if err != nil {
				t.Fatalf("?%s: bad Location %q", q, loc)
			}
			ok := (u.Scheme == "https" && u.Host == "app.example" && u.Path == "/cb") ||
				(u.Scheme == "http" && u.Hostname() == "127.0.0.1" && u.Path == "/cb")
			if !ok {
				t.Fatalf("?%s redirected to %q, which is not a registered URI", q, loc)
			}
		}
	})
}
