package httpx

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"oauth2-api/metrics"
	"oauth2-api/ratelimit"
	"oauth2-api/token"
)

// decodeTarget is what the DecodeJSON tests decode into.
type decodeTarget struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
}

func jsonRequest(body, contentType string) *http.Request {
	r := httptest.NewRequest("POST", "/x", strings.NewReader(body))
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	return r
}

// wantHTTPError fails unless err is an *Error with status and code.
func wantHTTPError(t testing.TB, what string, err error, status int, code string) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("%s = %v; want *Error %d %s", what, err, status, code)
	}
	if e.Status() != status || e.RESTCode() != code {
		t.Fatalf("%s = %d %s (%q); want %d %s", what, e.Status(), e.RESTCode(), e.Message, status, code)
	}
	if e.Message == "" {
		t.Fatalf("%s: empty message", what)
	}
	return e
}

// TestUnmarshalStrictExactNames: encoding/json matches a field's name in
// any letter case, and unescaped; a name is known only as the field spells
// it (RFC 8259 names are case-sensitive), byte for byte, so another
// spelling, an escape included, is an unknown field, whatever the depth.
// Escapes in values are fine (Go's encoding/json writes < as \u003c).
func TestUnmarshalStrictExactNames(t *testing.T) {
	var dst struct {
		Email string `json:"email"`
		List  []struct {
			Role string `json:"role"`
		} `json:"list"`
	}
	for _, body := range []string{`{"EMAIL":"x"}`, `{"Email":"x"}`, `{"list":[{"role":"a"},{"ROLE":"admin"}]}`,
		`{"\u0065mail":"x"}`, `{"emai\u006c":"x"}`, `{"list":[{"r\u006fle":"admin"}]}`} {
		err := UnmarshalStrict([]byte(body), &dst)
		e := wantHTTPError(t, fmt.Sprintf("UnmarshalStrict(%s)", body), err, 400, "invalid_json")
		if !strings.HasPrefix(e.Message, "unknown field ") {
			t.Errorf("UnmarshalStrict(%s): %q; want an unknown field", body, e.Message)
		}
	}
	if err := UnmarshalStrict([]byte(`{"email":"\u003cx\u003e","list":[{"role":"a"}]}`), &dst); err != nil || dst.Email != "<x>" || dst.List[0].Role != "a" {
		t.Errorf("UnmarshalStrict(exact names) = %v, %+v", err, dst)
	}
}

func TestDecodeJSON(t *testing.T) {
	long := strings.Repeat("x", 5000)
	for _, tc := range []struct {
		name, body, ct string
		status         int
		code           string
	}{
		{"no content type", `{"name":"a"}`, "", 415, "unsupported_media_type"},
		{"text/plain", `{"name":"a"}`, "text/plain", 415, "unsupported_media_type"},
		{"form", `name=a`, "application/x-www-form-urlencoded", 415, "unsupported_media_type"},
		{"json suffix type", `{"name":"a"}`, "application/json-patch+json", 415, "unsupported_media_type"},
		{"malformed media type", `{"name":"a"}`, "application/json; =", 415, "unsupported_media_type"},
		{"empty body", ``, "application/json", 400, "invalid_json"},
		{"malformed", `{"name":`, "application/json", 400, "invalid_json"},
		{"not an object", `[1,2]`, "application/json", 400, "invalid_json"},
		{"invalid UTF-8", "{\"name\":\"a\xff\"}", "application/json", 400, "invalid_json"},
		{"unknown field", `{"name":"a","admin":true}`, "application/json", 400, "invalid_json"},
		{"wrong type", `{"count":"three"}`, "application/json", 400, "invalid_json"},
		{"trailing value", `{"name":"a"} {"name":"b"}`, "application/json", 400, "invalid_json"},
		{"trailing garbage", `{"name":"a"}x`, "application/json", 400, "invalid_json"},
		{"trailing brace", `{"name":"a"}}`, "application/json", 400, "invalid_json"},
		{"null", ` null `, "application/json", 400, "invalid_json"}, // read as {} by encoding/json: a second form of it
		{"duplicate key", `{"name":"short","name":"long-and-valid"}`, "application/json", 400, "invalid_json"},
		{"a name in another case", `{"NAME":"a"}`, "application/json", 400, "invalid_json"},
		{"a name twice, in two cases", `{"name":"a","NAME":"b"}`, "application/json", 400, "invalid_json"},
		{"a name with a Kelvin sign for k", `{"\u212Aount":2}`, "application/json", 400, "invalid_json"},
		{"a name with an escape", `{"n\u0061me":"a"}`, "application/json", 400, "invalid_json"},
		{"duplicate key after a nested value", `{"name":"a","count":{"x":[1,{"y":2}]},"name":"b"}`, "application/json", 400, "invalid_json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var dst decodeTarget
			err := DecodeJSON(jsonRequest(tc.body, tc.ct), &dst)
			wantHTTPError(t, fmt.Sprintf("DecodeJSON(%q, %q)", tc.body, tc.ct), err, tc.status, tc.code)
		})
	}

	t.Run("good", func(t *testing.T) {
		for _, ct := range []string{"application/json", "application/json; charset=utf-8", "Application/JSON"} {
			var dst decodeTarget
			if err := DecodeJSON(jsonRequest("{\"name\":\"ünï\",\"count\":3}\n", ct), &dst); err != nil {
				t.Fatalf("DecodeJSON(ct %q) = %v", ct, err)
			}
			if dst != (decodeTarget{"ünï", 3}) {
				t.Fatalf("DecodeJSON(ct %q) decoded %+v", ct, dst)
			}
		}
	})

	// A duplicate key anywhere refuses the body; the same key in different
	// objects does not.
	t.Run("nested duplicates", func(t *testing.T) {
		for body, dup := range map[string]bool{
			`{"a":{"b":1,"b":2}}`:             true,
			`{"a":[{"b":1},{"c":1,"c":2}]}`:   true,
			`[{"a":1},{"a":1}]`:               false,
			`{"a":{"a":{"a":1}},"b":{"a":2}}`: false,
			`{"a":[],"b":{},"c":"{\"c\":1}"}`: false,
		} {
			if _, got, _ := token.CheckKeys([]byte(body), nil); got != dup {
				t.Errorf("CheckKeys(%s) repeated = %v; want %v", body, got, dup)
			}
		}
	})

	t.Run("messages do not echo input", func(t *testing.T) {
		for _, body := range []string{
			`{"count":"` + long + `"}`,            // wrong type: the value is not echoed
			`{"` + long + `":1}`,                  // unknown field: the name is clipped
			`{"name":"a"}` + long,                 // trailing data
			`{"name":"` + long + `"` + long + `}`, // malformed
		} {
			err := DecodeJSON(jsonRequest(body, "application/json"), &decodeTarget{})
			e := wantHTTPError(t, "DecodeJSON(long input)", err, 400, "invalid_json")
			if len(e.Message) > 120 || strings.Contains(e.Message, strings.Repeat("x", 65)) {
				t.Errorf("message echoes the input: %q", e.Message)
			}
		}
	})

	t.Run("413 through MaxBytesReader", func(t *testing.T) {
		body := `{"name":"` + strings.Repeat("a", MaxBody) + `"}`
		r := jsonRequest(body, "application/json")
		r.ContentLength = -1 // as if chunked: only the reader's limit stops it
		r.Body = http.MaxBytesReader(httptest.NewRecorder(), r.Body, MaxBody)
		wantHTTPError(t, "DecodeJSON(over MaxBytesReader)", DecodeJSON(r, &decodeTarget{}), 413, "request_too_large")
	})

	t.Run("413 without a limit reader", func(t *testing.T) {
		body := `{"name":"` + strings.Repeat("a", MaxBody) + `"}`
		wantHTTPError(t, "DecodeJSON(over MaxBody)", DecodeJSON(jsonRequest(body, "application/json"), &decodeTarget{}), 413, "request_too_large")
	})

	t.Run("exactly MaxBody", func(t *testing.T) {
		body := `{"name":"` + strings.Repeat("a", MaxBody-len(`{"name":""}`)) + `"}`
		if len(body) != MaxBody {
			t.Fatalf("bad test: body %d bytes", len(body))
		}
		r := jsonRequest(body, "application/json")
		r.Body = http.MaxBytesReader(httptest.NewRecorder(), r.Body, MaxBody)
		var dst decodeTarget
		if err := DecodeJSON(r, &dst); err != nil || len(dst.Name) != MaxBody-len(`{"name":""}`) {
			t.Fatalf("DecodeJSON(MaxBody bytes) = %v", err)
		}
	})
}

// TestClip: Clip keeps at most n bytes, never splits a rune, and leaves
// invalid bytes for the caller's %q to show.
func TestClip(t *testing.T) {
	for _, c := range []struct {
		s    string
		n    int
		want string
	}{
		{"abc", 3, "abc"},
		{"abcd", 3, "abc…"},
		{"aé", 2, "a…"},         // é's two bytes straddle the cut
		{"日本", 4, "日…"},         // three-byte runes
		{"a\xffb", 2, "a\xff…"}, // an invalid byte is not the cut's to drop
		{"éé", 0, "…"},
	} {
		if got := Clip(c.s, c.n); got != c.want {
			t.Errorf("Clip(%q, %d) = %q; want %q", c.s, c.n, got, c.want)
		}
	}
}

func TestWriteError(t *testing.T) {
	t.Run("client error", func(t *testing.T) {
		var logs bytes.Buffer
		w := httptest.NewRecorder()
		err := fmt.Errorf("wrapped: %w", &Error{Kind: KindRateLimited, Message: "slow down",
			RetryAfter: 1500 * time.Millisecond, Authenticate: `Bearer realm="x"`})
		WriteError(w, httptest.NewRequest("GET", "/", nil), slog.New(slog.NewJSONHandler(&logs, nil)), err)
		if w.Code != 429 {
			t.Fatalf("status %d; want 429", w.Code)
		}
		if got := w.Header().Get("Retry-After"); got != "2" {
			t.Errorf("Retry-After %q; want 2 (1.5 s rounded up)", got)
		}
		if got := w.Header().Get("WWW-Authenticate"); got != `Bearer realm="x"` {
			t.Errorf("WWW-Authenticate %q", got)
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q", ct)
		}
		var body map[string]string
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body["error"] != "rate_limited" || body["message"] != "slow down" || len(body) != 2 {
			t.Errorf("body %q (%v); want error and message only", w.Body.String(), err)
		}
		if logs.Len() != 0 {
			t.Errorf("a client error was logged: %s", logs.String())
		}
	})

	t.Run("retry after rounding", func(t *testing.T) {
		for _, tc := range []struct {
			d    time.Duration
			want string
		}{{time.Nanosecond, "1"}, {time.Second, "1"}, {time.Second + 1, "2"}, {59*time.Second + time.Millisecond, "60"}, {0, ""}, {-time.Second, ""}} {
			w := httptest.NewRecorder()
			WriteError(w, httptest.NewRequest("GET", "/", nil), nil, &Error{Kind: KindRateLimited, Message: "m", RetryAfter: tc.d})
			if got := w.Header().Get("Retry-After"); got != tc.want {
				t.Errorf("RetryAfter %v: Retry-After %q; want %q", tc.d, got, tc.want)
			}
		}
	})

	t.Run("internal error", func(t *testing.T) {
		var logs bytes.Buffer
		w := httptest.NewRecorder()
		r := httptest.NewRequest("GET", "/", nil)
		WriteError(w, r, slog.New(slog.NewJSONHandler(&logs, nil)), errors.New(`pq: relation "users" does not exist at db.go:12`))
		if w.Code != 500 {
			t.Fatalf("status %d; want 500", w.Code)
		}
		var body map[string]string
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body["error"] != "server_error" || body["message"] == "" {
			t.Fatalf("body %q; want server_error", w.Body.String())
		}
		for _, leak := range []string{"relation", "users", "db.go", "pq:"} {
			if strings.Contains(w.Body.String(), leak) {
				t.Errorf("body %q leaks %q", w.Body.String(), leak)
			}
		}
		if w.Header().Get("Retry-After") != "" || w.Header().Get("WWW-Authenticate") != "" {
			t.Errorf("unexpected headers %v", w.Header())
		}
		if !strings.Contains(logs.String(), `relation \"users\" does not exist`) {
			t.Errorf("the internal error was not logged: %q", logs.String())
		}
	})
}

func TestClientIP(t *testing.T) {
	trusted, err := ParsePrefixes("10.0.0.0/8, 192.0.2.10, 2001:db8:1::/48")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		trusted []netip.Prefix
		remote  string
		xff     []string
		realIP  string
		want    string
	}{
		{name: "no proxies", remote: "203.0.113.5:1234", want: "203.0.113.5"},
		{name: "no proxies ignore XFF", remote: "203.0.113.5:1234", xff: []string{"198.51.100.7"}, realIP: "198.51.100.8", want: "203.0.113.5"},
		{name: "untrusted peer ignores XFF", trusted: trusted, remote: "203.0.113.5:1234", xff: []string{"198.51.100.7"}, want: "203.0.113.5"},
		{name: "untrusted peer ignores X-Real-IP", trusted: trusted, remote: "203.0.113.5:1234", realIP: "198.51.100.8", want: "203.0.113.5"},
		{name: "trusted peer, one hop", trusted: trusted, remote: "10.0.0.1:1234", xff: []string{"198.51.100.7"}, want: "198.51.100.7"},
		{name: "trusted single address", trusted: trusted, remote: "192.0.2.10:1234", xff: []string{"198.51.100.7"}, want: "198.51.100.7"},
		{name: "neighbour of trusted address", trusted: trusted, remote: "192.0.2.11:1234", xff: []string{"198.51.100.7"}, want: "192.0.2.11"},
		{name: "skips trusted hops", trusted: trusted, remote: "10.0.0.1:1234", xff: []string{"198.51.100.7, 10.0.0.3, 10.0.0.2"}, want: "198.51.100.7"},
		{name: "spoofed left entry ignored", trusted: trusted, remote: "10.0.0.1:1234", xff: []string{"1.1.1.1, 198.51.100.7"}, want: "198.51.100.7"},
		{name: "several headers", trusted: trusted, remote: "10.0.0.1:1234", xff: []string{"1.1.1.1", "198.51.100.7, 10.0.0.2"}, want: "198.51.100.7"},
		{name: "several headers, last all trusted", trusted: trusted, remote: "10.0.0.1:1234", xff: []string{"1.1.1.1, 198.51.100.9", "10.0.0.2"}, want: "198.51.100.9"},
		{name: "every hop trusted", trusted: trusted, remote: "10.0.0.1:1234", xff: []string{"10.0.0.3, 10.0.0.2"}, want: "10.0.0.3"},
		{name: "malformed hop stops the walk", trusted: trusted, remote: "10.0.0.1:1234", xff: []string{"198.51.100.7, bogus, 10.0.0.2"}, want: "10.0.0.2"},
		{name: "malformed rightmost hop", trusted: trusted, remote: "10.0.0.1:1234", xff: []string{"198.51.100.7, 999.1.1.1"}, want: "10.0.0.1"},
		{name: "hop with port is malformed", trusted: trusted, remote: "10.0.0.1:1234", xff: []string{"198.51.100.7:80"}, want: "10.0.0.1"},
		{name: "empty hop is malformed", trusted: trusted, remote: "10.0.0.1:1234", xff: []string{"198.51.100.7,"}, want: "10.0.0.1"},
		{name: "X-Real-IP from trusted peer", trusted: trusted, remote: "10.0.0.1:1234", realIP: " 198.51.100.8 ", want: "198.51.100.8"},
		{name: "XFF wins over X-Real-IP", trusted: trusted, remote: "10.0.0.1:1234", xff: []string{"198.51.100.7"}, realIP: "198.51.100.8", want: "198.51.100.7"},
		{name: "bad X-Real-IP", trusted: trusted, remote: "10.0.0.1:1234", realIP: "nope", want: "10.0.0.1"},
		{name: "no-break space is not OWS", trusted: trusted, remote: "10.0.0.1:1234", xff: []string{"198.51.100.7\u00a0"}, want: "10.0.0.1"},
		{name: "vertical tab is not OWS", trusted: trusted, remote: "10.0.0.1:1234", realIP: "198.51.100.8\v", want: "10.0.0.1"},
		{name: "tab is OWS", trusted: trusted, remote: "10.0.0.1:1234", xff: []string{"\t198.51.100.7\t"}, want: "198.51.100.7"},
		{name: "mapped peer", remote: "[::ffff:203.0.113.5]:1234", want: "203.0.113.5"},
		{name: "mapped trusted peer", trusted: trusted, remote: "[::ffff:10.0.0.1]:1234", xff: []string{"198.51.100.7"}, want: "198.51.100.7"},
		{name: "mapped hop", trusted: trusted, remote: "10.0.0.1:1234", xff: []string{"::ffff:198.51.100.7, ::ffff:10.0.0.2"}, want: "198.51.100.7"},
		{name: "mapped X-Real-IP", trusted: trusted, remote: "10.0.0.1:1234", realIP: "::ffff:198.51.100.8", want: "198.51.100.8"},
		{name: "IPv6 peer", remote: "[2001:db8::1]:443", want: "2001:db8::1"},
		{name: "IPv6 trusted peer", trusted: trusted, remote: "[2001:db8:1::5]:443", xff: []string{"2001:db8:2::9"}, want: "2001:db8:2::9"},
		{name: "no port", remote: "203.0.113.5", want: "invalid IP"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tc.remote
		for _, v := range tc.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if tc.realIP != "" {
			r.Header.Set("X-Real-IP", tc.realIP)
		}
		got := IPResolver{Trusted: tc.trusted}.ClientIP(r)
		if got.String() != tc.want {
			t.Errorf("%s: ClientIP(remote %s, XFF %q, X-Real-IP %q) = %v; want %s", tc.name, tc.remote, tc.xff, tc.realIP, got, tc.want)
		}
	}
}

func TestParsePrefixes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		bad  bool
	}{
		{in: "", want: nil},
		{in: " , ", want: nil},
		{in: "10.0.0.0/8", want: []string{"10.0.0.0/8"}},
		{in: "10.1.2.3/8", want: []string{"10.0.0.0/8"}}, // masked
		{in: "10.0.0.0/8, 192.0.2.1 ,2001:db8::/32", want: []string{"10.0.0.0/8", "192.0.2.1/32", "2001:db8::/32"}},
		{in: "2001:db8::1", want: []string{"2001:db8::1/128"}},
		{in: "::ffff:192.0.2.1", want: []string{"192.0.2.1/32"}},
		{in: "bad", bad: true},
		{in: "10.0.0.0/33", bad: true},
		{in: "10.0.0.0/8,nope", bad: true},
		{in: "10.0.0.0/", bad: true},
		{in: "*", bad: true},
		{in: "::ffff:10.0.0.0/104", bad: true}, // would never match: peers are compared unmapped
		{in: "fe80::1%eth0", bad: true},        // a link-local peer has a zone: it would never match, or match every link's
		{in: "fe80::/10", bad: true},
		{in: "0.0.0.0/0", bad: true}, // every client would name its own address
		{in: "10.0.0.0/8,::/0", bad: true},
	} {
		got, err := ParsePrefixes(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("ParsePrefixes(%q) = %v; want error", tc.in, got)
			}
			continue
		}
		var s []string
		for _, p := range got {
			s = append(s, p.String())
		}
		if err != nil || !slices.Equal(s, tc.want) {
			t.Errorf("ParsePrefixes(%q) = %v, %v; want %v", tc.in, s, err, tc.want)
		}
	}
}

var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Reached", "yes")
	io.WriteString(w, "ok")
})

func TestCORS(t *testing.T) {
	h := CORS([]string{"https://app.example.com", "http://localhost:3000"}, okHandler)
	send := func(method, origin string, headers ...string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, "/api/v1/profile", nil)
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		for i := 0; i+1 < len(headers); i += 2 {
			r.Header.Set(headers[i], headers[i+1])
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}

	w := send("GET", "https://app.example.com")
	if got := w.Header().Get("Access-Control-Allow-Origin"); got != "https://app.example.com" || w.Header().Get("X-Reached") != "yes" {
		t.Errorf("allowed origin: ACAO %q, reached %q", got, w.Header().Get("X-Reached"))
	}
	if !slices.Contains(w.Header().Values("Vary"), "Origin") {
		t.Errorf("allowed origin: Vary %q; want Origin", w.Header().Values("Vary"))
	}
	if w.Header().Get("Access-Control-Allow-Credentials") != "" {
		t.Errorf("credentials allowed: %v", w.Header())
	}

	for _, origin := range []string{"https://evil.example.com", "https://app.example.com.evil.com", "null", "https://APP.example.com", ""} {
		w := send("GET", origin)
		if got := w.Header().Get("Access-Control-Allow-Origin"); got != "" {
			t.Errorf("origin %q: ACAO %q; want none", origin, got)
		}
		if w.Header().Get("X-Reached") != "yes" {
			t.Errorf("origin %q: a simple request did not reach the handler", origin)
		}
		if !slices.Contains(w.Header().Values("Vary"), "Origin") {
			t.Errorf("origin %q: no Vary: Origin (a cache could serve another origin's answer)", origin)
		}
	}

	w = send("OPTIONS", "http://localhost:3000", "Access-Control-Request-Method", "PATCH", "Access-Control-Request-Headers", "authorization")
	if w.Code != http.StatusNoContent || w.Header().Get("X-Reached") != "" {
		t.Fatalf("preflight: status %d, reached %q; want 204 answered by CORS", w.Code, w.Header().Get("X-Reached"))
	}
	if got := w.Header().Get("Access-Control-Allow-Origin"); got != "http://localhost:3000" {
		t.Errorf("preflight ACAO %q", got)
	}
	if m := w.Header().Get("Access-Control-Allow-Methods"); !strings.Contains(m, "PATCH") || !strings.Contains(m, "DELETE") {
		t.Errorf("preflight Allow-Methods %q", m)
	}
	if h := w.Header().Get("Access-Control-Allow-Headers"); !strings.Contains(h, "Authorization") || !strings.Contains(h, "Content-Type") {
		t.Errorf("preflight Allow-Headers %q", h)
	}

	w = send("OPTIONS", "https://evil.example.com", "Access-Control-Request-Method", "POST")
	if w.Code != http.StatusForbidden || w.Header().Get("X-Reached") != "" || w.Header().Get("Access-Control-Allow-Origin") != "" || w.Header().Get("Access-Control-Allow-Methods") != "" {
		t.Errorf("disallowed preflight: status %d, headers %v; want 403 with no CORS grant", w.Code, w.Header())
	}

	// A plain OPTIONS (no Access-Control-Request-Method) is not a preflight.
	if w := send("OPTIONS", "https://evil.example.com"); w.Header().Get("X-Reached") != "yes" {
		t.Errorf("plain OPTIONS did not reach the handler: %d", w.Code)
	}

	// No origins configured: CORS is off.
	w = httptest.NewRecorder()
	r := httptest.NewRequest("OPTIONS", "/", nil)
	r.Header.Set("Origin", "https://app.example.com")
	r.Header.Set("Access-Control-Request-Method", "GET")
	CORS(nil, okHandler).ServeHTTP(w, r)
	if w.Header().Get("Access-Control-Allow-Origin") != "" || w.Header().Get("X-Reached") != "yes" {
		t.Errorf("CORS(nil) answered %d %v", w.Code, w.Header())
	}
}

func TestSecureHeaders(t *testing.T) {
	for _, release := range []bool{false, true} {
		w := httptest.NewRecorder()
		SecureHeaders(release, okHandler).ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
		h := w.Header()
		for name, want := range map[string]string{
			"X-Content-Type-Options": "nosniff",
			"X-Frame-Options":        "DENY",
			"Referrer-Policy":        "no-referrer",
		} {
			if got := h.Get(name); got != want {
				t.Errorf("release=%v: %s %q; want %q", release, name, got, want)
			}
		}
		if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("release=%v: CSP %q", release, csp)
		}
		hsts := h.Get("Strict-Transport-Security")
		if release && !strings.HasPrefix(hsts, "max-age=") {
			t.Errorf("release: HSTS %q; want max-age", hsts)
		}
		if !release && hsts != "" {
			t.Errorf("debug: HSTS %q; want none (it would pin http://localhost to https)", hsts)
		}
	}
}

// logLines decodes JSON log output, one object a line.
func logLines(t testing.TB, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %v: %q", err, line)
		}
		out = append(out, m)
	}
	return out
}

func TestObserve(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	reg := metrics.NewRegistry()
	m := NewMetrics(reg)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /items/{id}", func(w http.ResponseWriter, r *http.Request) {
		InfoFrom(r).UserID = "42"
		w.WriteHeader(http.StatusTeapot)
		io.WriteString(w, "short and stout")
	})
	mux.HandleFunc("POST /quiet", func(w http.ResponseWriter, r *http.Request) {}) // writes nothing: 200
	clock := time.Unix(1_800_000_000, 0)
	now := func() time.Time { clock = clock.Add(250 * time.Millisecond); return clock }
	trusted, _ := ParsePrefixes("10.0.0.0/8")
	h := Observe(log, m, IPResolver{Trusted: trusted}, now, mux)

	r := httptest.NewRequest("GET", "/items/12345?token=s3cr3t-query-value", nil)
	r.RemoteAddr = "10.0.0.1:5555"
	r.Header.Set("X-Forwarded-For", "198.51.100.7")
	r.Header.Set("User-Agent", "test-agent/1.0")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)

	id := w.Header().Get("X-Request-ID")
	if id == "" {
		t.Fatal("no X-Request-ID")
	}
	lines := logLines(t, logs.String())
	if len(lines) != 1 {
		t.Fatalf("%d log lines; want 1: %s", len(lines), logs.String())
	}
	l := lines[0]
	for k, want := range map[string]any{
		"msg": "request", "level": "INFO", "request_id": id, "method": "GET", "route": "/items/{id}",
		"path": "/items/12345", "status": float64(418), "client_ip": "198.51.100.7",
		"user_agent": "test-agent/1.0", "user_id": "42", "bytes": float64(len("short and stout")),
		"duration_ms": float64(250),
	} {
		if l[k] != want {
			t.Errorf("log %s = %v (%T); want %v", k, l[k], l[k], want)
		}
	}
	if strings.Contains(logs.String(), "s3cr3t") || strings.Contains(logs.String(), "token=") {
		t.Errorf("the query string was logged: %s", logs.String())
	}
	if _, ok := l["client_id"]; ok {
		t.Errorf("empty client_id logged: %v", l)
	}

	// A second request gets another id; a handler that writes nothing is 200.
	w2 := httptest.NewRecorder()
	h.ServeHTTP(w2, httptest.NewRequest("POST", "/quiet", nil))
	if id2 := w2.Header().Get("X-Request-ID"); id2 == "" || id2 == id {
		t.Errorf("second request id %q (first %q)", id2, id)
	}
	// Unrouted and odd methods are labelled from fixed sets.
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("BREW", "/pot/77", nil))

	text := scrape(reg)
	for _, want := range []string{
		`oauth2_http_requests_total{method="GET",endpoint="/items/{id}",status="418"} 1`,
		`oauth2_http_requests_total{method="POST",endpoint="/quiet",status="200"} 1`,
		`oauth2_http_requests_total{method="OTHER",endpoint="unmatched",status="404"} 1`,
		`oauth2_http_request_duration_seconds_count{method="GET",endpoint="/items/{id}"} 1`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s:\n%s", want, text)
		}
	}
	if strings.Contains(text, "12345") || strings.Contains(text, "/pot/77") || strings.Contains(text, "BREW") {
		t.Errorf("a raw path or method became a label:\n%s", text)
	}

	// The path, the User-Agent and the method (any token, up to the
	// header limit: a 36 KB one made a 36 KB line) are clipped to
	// maxLogText bytes, on a rune's boundary.
	logs.Reset()
	long := "/items/" + strings.Repeat("a", maxLogText-8) + "é" + strings.Repeat("b", 30000)
	r = httptest.NewRequest("GET", "/x", nil)
	r.URL.Path = long
	r.Header.Set("User-Agent", long)
	h.ServeHTTP(httptest.NewRecorder(), r)
	r = httptest.NewRequest("GET", "/x", nil)
	r.Method = strings.Repeat("A", 30000)
	h.ServeHTTP(httptest.NewRecorder(), r)
	lines = logLines(t, logs.String())
	for _, k := range []string{"path", "user_agent"} {
		if got, _ := lines[0][k].(string); got != long[:maxLogText-1]+"…" {
			t.Errorf("log %s: %d bytes %.20q…; want the first %d bytes and …", k, len(got), got, maxLogText-1)
		}
	}
	if got, _ := lines[1]["method"].(string); got != r.Method[:maxLogText]+"…" {
		t.Errorf("log method: %d bytes; want the first %d bytes and …", len(got), maxLogText)
	}
}

// scrape is the body GET /metrics is served.
func scrape(reg *metrics.Registry) string {
	w := httptest.NewRecorder()
	reg.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	return w.Body.String()
}

// TestUntrustedProxyWarnedOnce: forwarding headers from a loopback, private or
// link-local peer while TRUSTED_PROXIES is empty (a proxy set up without it) log one
// warning per process, without the header's value; not with TRUSTED_PROXIES
// set, and not from a public peer.
func TestUntrustedProxyWarnedOnce(t *testing.T) {
	for _, tc := range []struct {
		name    string
		trusted string
		peers   []string
		want    int
	}{
		{"loopback proxy, nothing trusted", "", []string{"127.0.0.1:4000", "[::1]:4000"}, 1},
		{"private proxy, nothing trusted", "", []string{"10.244.1.7:4000", "172.30.80.2:4000", "169.254.8.1:4000"}, 1},
		{"proxy trusted", "127.0.0.1/32", []string{"127.0.0.1:4000", "127.0.0.1:4001"}, 0},
		{"public peer", "", []string{"203.0.113.5:4000", "198.51.100.9:4000"}, 0},
	} {
		var logs bytes.Buffer
		trusted, _ := ParsePrefixes(tc.trusted)
		h := Observe(slog.New(slog.NewJSONHandler(&logs, nil)), NewMetrics(metrics.NewRegistry()), IPResolver{Trusted: trusted},
			time.Now, http.NotFoundHandler())
		for i, peer := range tc.peers {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = peer
			if i == 0 {
				r.Header.Set("X-Forwarded-For", "192.0.2.77")
			} else {
				r.Header.Set("X-Real-IP", "192.0.2.77")
			}
			h.ServeHTTP(httptest.NewRecorder(), r)
		}
		if got := strings.Count(logs.String(), "TRUSTED_PROXIES"); got != tc.want {
			t.Errorf("%s: %d warnings about TRUSTED_PROXIES; want %d:\n%s", tc.name, got, tc.want, logs.String())
		}
		if tc.trusted == "" && strings.Contains(logs.String(), "192.0.2.77") { // (a trusted one is the client_ip)
			t.Errorf("%s: an untrusted forwarding header's value was logged:\n%s", tc.name, logs.String())
		}
	}
}

func TestRecover(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	panicky := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { panic("boom: secret detail") })

	for _, name := range []string{"bare", "inside Observe"} {
		logs.Reset()
		var h http.Handler = Recover(log, panicky)
		if name == "inside Observe" {
			h = Observe(log, NewMetrics(metrics.NewRegistry()), IPResolver{}, time.Now, h)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
		if w.Code != 500 {
			t.Fatalf("%s: status %d; want 500", name, w.Code)
		}
		var body map[string]string
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body["error"] != "server_error" || body["message"] == "" {
			t.Fatalf("%s: body %q; want a server_error JSON object", name, w.Body.String())
		}
		for _, leak := range []string{"boom", "goroutine", ".go:", "panic"} {
			if strings.Contains(w.Body.String(), leak) {
				t.Errorf("%s: body %q leaks %q", name, w.Body.String(), leak)
			}
		}
		if !strings.Contains(logs.String(), `"msg":"panic"`) || !strings.Contains(logs.String(), "boom") || !strings.Contains(logs.String(), "goroutine") {
			t.Errorf("%s: panic not logged with its stack: %s", name, logs.String())
		}
	}

	// A handler that panics after writing: nothing more is written.
	h := Observe(log, NewMetrics(metrics.NewRegistry()), IPResolver{}, time.Now, Recover(log, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, "partial")
		panic("late")
	})))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	if w.Code != http.StatusAccepted || w.Body.String() != "partial" {
		t.Errorf("late panic: %d %q; want the handler's own 202 partial", w.Code, w.Body.String())
	}

	// http.ErrAbortHandler is re-raised for net/http.
	func() {
		defer func() {
			if v := recover(); v != http.ErrAbortHandler {
				t.Errorf("recovered %v; want http.ErrAbortHandler re-raised", v)
			}
		}()
		Recover(log, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { panic(http.ErrAbortHandler) })).
			ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	}()
}

func TestLimitBody(t *testing.T) {
	var readErr error
	var readN int
	reached := false
	h := LimitBody(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached = true
		b, err := io.ReadAll(r.Body)
		readN, readErr = len(b), err
	}))

	// A declared length over the limit reaches the handler, whose ReadBody
	// refuses it without reading (the handler answers on its own surface).
	big := httptest.NewRequest("POST", "/", strings.NewReader(strings.Repeat("a", MaxBody+1)))
	if _, err := ReadBody(big); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("ReadBody of a declared oversize: %v; want ErrTooLarge", err)
	}
	h.ServeHTTP(httptest.NewRecorder(), big)
	if !reached {
		t.Fatal("declared oversize: the handler was not reached")
	}
	reached = false

	// A body of unknown length is cut at the limit while it is read.
	r := httptest.NewRequest("POST", "/", strings.NewReader(strings.Repeat("a", MaxBody+10)))
	r.ContentLength = -1
	h.ServeHTTP(httptest.NewRecorder(), r)
	var mbe *http.MaxBytesError
	if !reached || !errors.As(readErr, &mbe) || readN > MaxBody {
		t.Errorf("unknown length: reached %v, read %d bytes, err %v; want a MaxBytesError at %d", reached, readN, readErr, MaxBody)
	}

	// At the limit is fine.
	reached = false
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/", strings.NewReader(strings.Repeat("a", MaxBody))))
	if !reached || readErr != nil || readN != MaxBody {
		t.Errorf("exactly MaxBody: reached %v, read %d, err %v", reached, readN, readErr)
	}
}

func TestRateLimit(t *testing.T) {
	reg := metrics.NewRegistry()
	m := NewMetrics(reg)
	at := time.Unix(1_800_000_000, 0)
	l := ratelimit.New(rate.Every(10*time.Second), 2, 100)
	h := Observe(slog.New(slog.NewJSONHandler(io.Discard, nil)), m, IPResolver{}, func() time.Time { return at },
		RateLimit(l, ByIP, m, func() time.Time { return at }, func(w http.ResponseWriter, r *http.Request, err error) { WriteError(w, r, nil, err) }, okHandler))
	send := func(remote string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = remote
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	for i := 0; i < 2; i++ {
		if w := send("203.0.113.1:1"); w.Code != 200 {
			t.Fatalf("request %d: %d; want 200", i+1, w.Code)
		}
	}
	w := send("203.0.113.1:2")
	if w.Code != http.StatusTooManyRequests || w.Header().Get("X-Reached") != "" {
		t.Fatalf("third request: %d; want 429", w.Code)
	}
	if got := w.Header().Get("Retry-After"); got != "10" {
		t.Errorf("Retry-After %q; want 10", got)
	}
	if m.RateLimited.Value() != 1 {
		t.Errorf("oauth2_rate_limited_total = %d; want 1", m.RateLimited.Value())
	}
	if w := send("203.0.113.2:1"); w.Code != 200 {
		t.Errorf("another client: %d; want 200 (buckets are per IP)", w.Code)
	}
	at = at.Add(10 * time.Second)
	if w := send("203.0.113.1:3"); w.Code != 200 {
		t.Errorf("after the wait: %d; want 200", w.Code)
	}
}

func TestRouteOf(t *testing.T) {
	for in, want := range map[string]string{
		"":                           "unmatched",
		"GET /api/v1/users/{id}":     "/api/v1/users/{id}",
		"PATCH /api/v1/users/{id}":   "/api/v1/users/{id}",
		"/api/":                      "/api/",
		"GET /{$}":                   "/{$}",
		"example.com/x":              "/x",
		"GET example.com/x/{y...}":   "/x/{y...}",
		"POST /oauth2/token":         "/oauth2/token",
		"GET /.well-known/jwks.json": "/.well-known/jwks.json",
	} {
		if got := routeOf(in); got != want {
			t.Errorf("routeOf(%q) = %q; want %q", in, got, want)
		}
	}
}

func TestMethodLabel(t *testing.T) {
	for _, m := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"} {
		if got := methodLabel(m); got != m {
			t.Errorf("methodLabel(%q) = %q", m, got)
		}
	}
	for _, m := range []string{"BREW", "get", "PROPFIND", "CONNECT", "TRACE", "", strings.Repeat("X", 1000)} {
		if got := methodLabel(m); got != "OTHER" {
			t.Errorf("methodLabel(%.20q) = %q; want OTHER", m, got)
		}
	}
}

func TestStatusLabel(t *testing.T) {
	for code, want := range map[int]string{200: "200", 404: "404", 599: "599", 600: "other", -1: "other", 1000: "other"} {
		if got := statusLabel(code); got != want {
			t.Errorf("statusLabel(%d) = %q; want %q", code, got, want)
		}
	}
}

// TestJSONEncodeFailure checks that a value encoding/json refuses (a bug in
// a handler) is answered 500 with the internal error body, whose length
// Content-Length gives, and nothing of the value.
func TestJSONEncodeFailure(t *testing.T) {
	rec := httptest.NewRecorder()
	JSON(rec, http.StatusOK, map[string]any{"f": func() {}})
	want := `{"error":"server_error","message":"internal error"}` + "\n"
	if rec.Code != http.StatusInternalServerError || rec.Body.String() != want {
		t.Errorf("JSON(func) = %d %q; want 500 %q", rec.Code, rec.Body.String(), want)
	}
	if got := rec.Header().Get("Content-Length"); got != fmt.Sprint(len(want)) {
		t.Errorf("Content-Length = %q; want %d", got, len(want))
	}
}

// A single-page app of a CORS origin can use DPoP (RFC 9449): its preflight
// may announce the DPoP header, and it may read DPoP-Nonce (§8) from the
// answers. Without them the browser refuses to send the proof, or hides
// the nonce a use_dpop_nonce error asks it to retry with.
func TestCORSAllowsDPoP(t *testing.T) {
	h := CORS([]string{"https://spa.example.com"}, okHandler)
	r := httptest.NewRequest("OPTIONS", "/oauth2/token", nil)
	r.Header.Set("Origin", "https://spa.example.com")
	r.Header.Set("Access-Control-Request-Method", "POST")
	r.Header.Set("Access-Control-Request-Headers", "content-type,dpop")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	allowed := strings.Split(strings.ToLower(w.Header().Get("Access-Control-Allow-Headers")), ", ")
	if w.Code != http.StatusNoContent || !slices.Contains(allowed, "dpop") {
		t.Errorf("preflight announcing DPoP: %d, Allow-Headers %q; want 204 allowing dpop", w.Code, allowed)
	}
	r = httptest.NewRequest("POST", "/oauth2/token", nil)
	r.Header.Set("Origin", "https://spa.example.com")
	w = httptest.NewRecorder()
	h.ServeHTTP(w, r)
	exposed := strings.Split(strings.ToLower(w.Header().Get("Access-Control-Expose-Headers")), ", ")
	if !slices.Contains(exposed, "dpop-nonce") {
		t.Errorf("Expose-Headers %q; want dpop-nonce among them", exposed)
	}
}

// An OAuth error_description holds only RFC 6749 §5.2's characters
// (%x20-21 / %x23-5B / %x5D-7E): messages quoted their input with %q and
// cited "§". A REST 401 carries a challenge (RFC 9110 §15.5.2): a login's
// and a refresh's had none. A preflight allows PUT, an RFC 7592 update.
func TestErrorsAsTheRFCsSpell(t *testing.T) {
	r := httptest.NewRequest("POST", "/oauth2/token", nil)
	w := httptest.NewRecorder()
	WriteOAuthError(w, r, nil, E(KindInvalidScope, "scope %q is not registered (RFC 8252 §7.1) é…\x01", "a\"b"))
	var body map[string]string
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body["error_description"] != `scope 'a''b' is not registered (RFC 8252 7.1) ` {
		t.Errorf("error_description %q (%v)", body["error_description"], err)
	}
	w = httptest.NewRecorder()
	WriteError(w, r, nil, E(KindInvalidCredentials, "invalid login or password"))
	if w.Code != http.StatusUnauthorized || w.Header().Get("WWW-Authenticate") != `Bearer realm="oauth2-api"` {
		t.Errorf("REST 401: %d, WWW-Authenticate %q", w.Code, w.Header().Get("WWW-Authenticate"))
	}
	w = httptest.NewRecorder()
	WriteError(w, r, nil, &Error{Kind: KindInvalidToken, Authenticate: `Bearer error="invalid_token"`})
	if got := w.Header().Values("WWW-Authenticate"); len(got) != 1 || got[0] != `Bearer error="invalid_token"` {
		t.Errorf("a 401 with its own challenge: WWW-Authenticate %q", got)
	}
	r = httptest.NewRequest("OPTIONS", "/oauth2/register/c1", nil)
	r.Header.Set("Origin", "https://spa.example.com")
	r.Header.Set("Access-Control-Request-Method", "PUT")
	w = httptest.NewRecorder()
	CORS([]string{"https://spa.example.com"}, okHandler).ServeHTTP(w, r)
	if !slices.Contains(strings.Split(w.Header().Get("Access-Control-Allow-Methods"), ", "), "PUT") {
		t.Errorf("preflight of a PUT: Allow-Methods %q", w.Header().Get("Access-Control-Allow-Methods"))
	}
}

// unavailable is an error that says a retry may succeed, as
// store.ErrUnavailable does.
type unavailable struct{}

func (unavailable) Error() string     { return "database unavailable" }
func (unavailable) Unavailable() bool { return true }

// Once the client has hung up, unavailability is its leaving (499, at
// debug), but a bug is still a bug: 500, logged at error, whether or not
// anyone reads the answer.
func TestClassifyAfterTheClientLeft(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r := httptest.NewRequest("GET", "/x", nil)
	ctx, cancel := context.WithCancel(r.Context())
	cancel()
	r = r.WithContext(ctx)
	if e := Classify(r, log, fmt.Errorf("statement: %w", unavailable{})); e.Kind != KindClientClosed {
		t.Errorf("unavailable after the client left: kind %d; want KindClientClosed", e.Kind)
	}
	if e := Classify(r, log, errors.New("a bug")); e.Kind != KindInternal || !strings.Contains(logs.String(), `"level":"ERROR"`) {
		t.Errorf("a bug after the client left: kind %d, logs %s; want KindInternal at error", e.Kind, logs.String())
	}
}
