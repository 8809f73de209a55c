package auth

import (
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/time/rate"

	"oauth2-api/ratelimit"
)

// benchEnv is an env whose logs go nowhere (a benchmark's allocations
// should be the server's, not a test buffer's).
func benchEnv(b *testing.B) *env {
	e := newEnv(b, "sqlite", func(d *Deps) {
		d.Log = slog.New(slog.NewJSONHandler(io.Discard, nil))
		d.API = ratelimit.New(rate.Limit(1e9), 1<<30, 1000)
		d.Creds = ratelimit.New(rate.Limit(1e9), 1<<30, 1000)
		d.Pages = ratelimit.New(rate.Limit(1e9), 1<<30, 1000)
		d.PerClient = ratelimit.NewNamed(rate.Limit(1e9), 1<<30, 1000)
	})
	e.secrets = nil
	return e
}

func benchRequest(b *testing.B, h http.Handler, newReq func() *http.Request, want int) {
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, newReq())
			if w.Code != want {
				b.Fatalf("status %d: %s", w.Code, w.Body.String())
			}
		}
	})
}

// BenchmarkClientCredentials is the token endpoint's hot path: form
// parsing, client authentication (cached, SHA-256), HS256 signing, JSON,
// metrics and the access log line.
func BenchmarkClientCredentials(b *testing.B) {
	e := benchEnv(b)
	id, secret := e.newClient(ClientSpec{Name: "svc", GrantTypes: []string{"client_credentials"}, Scopes: []string{"read"}})
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
	benchRequest(b, e.h, func() *http.Request {
		r := httptest.NewRequest("POST", "/oauth2/token", strings.NewReader("grant_type=client_credentials"))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.Header.Set("Authorization", auth)
		return r
	}, 200)
}

// BenchmarkIntrospect: client authentication, JWT verification and the
// revocation check.
func BenchmarkIntrospect(b *testing.B) {
	e := benchEnv(b)
	id, secret := e.newClient(ClientSpec{Name: "svc", GrantTypes: []string{"client_credentials"}, Scopes: []string{"read"}})
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
	tok := e.token(id, secret, url.Values{"grant_type": {"client_credentials"}}).Str("access_token")
	body := "token=" + tok
	benchRequest(b, e.h, func() *http.Request {
		r := httptest.NewRequest("POST", "/oauth2/introspect", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.Header.Set("Authorization", auth)
		return r
	}, 200)
}

// BenchmarkProfile: bearer verification and one user read from SQLite.
func BenchmarkProfile(b *testing.B) {
	e := benchEnv(b)
	e.createUser("ann@example.com", "ann", "correct horse", "user")
	at, _ := e.login("ann", "correct horse")
	benchRequest(b, e.h, func() *http.Request {
		r := httptest.NewRequest("GET", "/api/v1/profile", nil)
		r.Header.Set("Authorization", "Bearer "+at)
		return r
	}, 200)
}

// BenchmarkClientAuth is client authentication alone.
func BenchmarkClientAuth(b *testing.B) {
	e := benchEnv(b)
	id, secret := e.newClient(ClientSpec{Name: "svc", GrantTypes: []string{"client_credentials"}})
	r := httptest.NewRequest("POST", "/oauth2/token", nil)
	r.SetBasicAuth(id, secret)
	form := url.Values{}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := authenticateClient(b.Context(), e.deps.Clients, r, form, false, e.clock.Now()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadForm is a token request body through readForm.
func BenchmarkReadForm(b *testing.B) {
	body := "grant_type=authorization_code&code=" + strings.Repeat("a", 43) + "&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&code_verifier=" + strings.Repeat("v", 64)
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest("POST", "/oauth2/token", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if _, err := readForm(r); err != nil {
			b.Fatal(err)
		}
	}
}
