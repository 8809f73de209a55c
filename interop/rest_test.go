package interop

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"
)

// restJSON calls the first-party REST API (API.md "The REST API") with a
// JSON body (nil for none) and, unless bearer is empty, an access token. It
// returns the status and the decoded JSON answer (nil for an empty body).
func (s *server) restJSON(t testing.TB, method, path, bearer string, body any) (int, map[string]any) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.URL+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := (&http.Client{Timeout: 15 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	if len(raw) == 0 {
		return resp.StatusCode, nil
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s %s: status %d, body %q is not a JSON object: %v", method, path, resp.StatusCode, raw, err)
	}
	return resp.StatusCode, out
}

// restLogin signs in through POST /api/v1/auth/login and returns the token
// pair; it fails the test unless the answer is 200.
func (s *server) restLogin(t testing.TB, login, password string) (access, refresh string) {
	t.Helper()
	code, body := s.restJSON(t, http.MethodPost, "/api/v1/auth/login", "", map[string]string{"login": login, "password": password})
	access, _ = body["access_token"].(string)
	refresh, _ = body["refresh_token"].(string)
	if code != http.StatusOK || access == "" || refresh == "" {
		t.Fatalf("REST login as %s: status %d, body %v; want 200 and a token pair", login, code, body)
	}
	s.noLog(access, refresh)
	return access, refresh
}
