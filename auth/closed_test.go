package auth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"oauth2-api/store"
	"oauth2-api/store/storetest"
)

// hangUp is a request body that cancels the request's context as its last
// byte is read: a client that sent its whole request and closed the
// connection, which net/http notices once the body is read.
type hangUp struct {
	*strings.Reader
	cancel context.CancelFunc
}

func (b hangUp) Read(p []byte) (int, error) {
	n, err := b.Reader.Read(p)
	if b.Len() == 0 {
		b.cancel()
	}
	return n, err
}

func (hangUp) Close() error { return nil }

// A client that hangs up while its login waits for the database or for a
// hashing slot is not a database outage: the access log and
// oauth2_http_requests_total say 499 (nginx's "client closed request"),
// not 503, and no WARN line is written. A statement's own deadline under a
// live request is still a 503 with its WARN line.
func TestClientHangingUpIsNot503(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			url := storetest.URL(t, d)
			db, raw := storetest.OpenURL(t, url), storetest.Raw(t, d, url)
			counted := func() (n int) {
				raw.QueryRow(`SELECT COALESCE(SUM(failures), 0) FROM login_failures`).Scan(&n)
				return n
			}
			e := newEnvOn(t, db, func(d *Deps) { d.Passwords = NewPasswords(testArgon2, 1, time.Hour) })
			e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
			login := func(ctx context.Context, cancel context.CancelFunc) *httptest.ResponseRecorder {
				body := `{"login":"ann","password":"Ann-Password-1"}`
				req := httptest.NewRequestWithContext(ctx, "POST", "/api/v1/auth/login", nil)
				req.Body, req.ContentLength = hangUp{strings.NewReader(body), cancel}, int64(len(body))
				req.Header.Set("Content-Type", "application/json")
				w := httptest.NewRecorder()
				e.h.ServeHTTP(w, req)
				return w
			}
			// Gone once the body is read: the login's first statement is cut short.
			ctx, cancel := context.WithCancel(context.Background())
			login(ctx, cancel)
			// Gone while waiting for the only hashing slot, which the test holds.
			e.deps.Passwords.slots <- struct{}{}
			before := counted()
			ctx, cancel = context.WithCancel(context.Background())
			done := make(chan *httptest.ResponseRecorder, 1)
			go func() { done <- login(ctx, func() {}) }()
			waitUntil(t, "the login never counted its attempt", func() bool { return counted() > before })
			cancel()
			<-done
			<-e.deps.Passwords.slots
			if m := e.metricsText(); !strings.Contains(m, `oauth2_http_requests_total{method="POST",endpoint="/api/v1/auth/login",status="499"} 2`) || strings.Contains(m, `status="503"`) {
				t.Errorf("after two clients hung up: %q; want two logins with status 499, none 503", regexp.MustCompile(`oauth2_http_requests_total\{.*`).FindAllString(m, -1))
			}
			for _, l := range e.logLines() {
				if l["level"] == "WARN" || l["level"] == "ERROR" || (l["msg"] == "request" && l["route"] == "/api/v1/auth/login" && l["status"] != 499.0) {
					t.Errorf("log line %v; want the logins' requests at status 499, no WARN or ERROR", l)
				}
			}
		})
	}
	for _, d := range storetest.Servers() {
		t.Run(d+"/statement deadline", func(t *testing.T) {
			db, p := storetest.OpenViaProxy(t, d)
			e := newEnvOn(t, db)
			e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
			p.Stall()
			defer p.Restore()
			e.loginAttempt("ann", "Ann-Password-1").want(http.StatusServiceUnavailable)
			if !strings.Contains(e.logs.String(), `"level":"WARN","msg":"service unavailable"`) {
				t.Errorf("a statement that reached its deadline logged no WARN line:\n%s", e.logs)
			}
		})
	}
}
