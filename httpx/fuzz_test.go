package httpx

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzUnmarshalStrict: what is accepted is valid UTF-8 and decodes to a value
// that survives a re-encoding, and was read under the names it was sent
// with, at every depth (encoding/json alone takes {"LOGIN":…} for login),
// in their one byte form: no member name with an escape but by_name's
// keys, which are data ({"\u006cogin":…} is login too); a refusal is
// always a 400 *Error.
func FuzzUnmarshalStrict(f *testing.F) {
	for _, s := range []string{`{"login":"ann","password":"x"}`, `{"login":"ann"} {}`, `{"login":"\ud800"}`,
		"{\"login\":\"\xff\"}", `{"LOGIN":"a"}`, `{"login":1}`, `{"extra":1}`, `[`, ``, `null`, `{"login":"a","login":"b"}`,
		`{"items":[{"name":"a"},{"NAME":"b"}]}`,    // a name in another case, in a nested struct
		`{"by_name":{"X":{"name":"a"}}}`,           // a map's keys are free; its values' are not
		`{"\u006cogin":"a"}`,                       // an escaped name is the name: refused
		`{"items":[{"n\u0061me":"a"}]}`,            // in a nested struct too
		`{"by_name":{"\u003c":{"name":"\u003c"}}}`, // a map's key and a value may hold escapes
	} {
		f.Add([]byte(s))
	}
	type item struct {
		Name string `json:"name"`
	}
	type req struct {
		Login    string          `json:"login"`
		Password string          `json:"password"`
		Items    []item          `json:"items"`
		ByName   map[string]item `json:"by_name"`
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var r req
		err := UnmarshalStrict(body, &r)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Status() != 400 {
				t.Fatalf("UnmarshalStrict(%q) = %v; want a 400 *Error", body, err)
			}
			return
		}
		if !utf8.Valid(body) {
			t.Fatalf("accepted invalid UTF-8 %q", body)
		}
		again, _ := json.Marshal(r)
		var r2 req
		if err := UnmarshalStrict(again, &r2); err != nil || !reflect.DeepEqual(r, r2) {
			t.Fatalf("re-encoding of %q does not decode back: %v", body, err)
		}
		var sent, read any
		if json.Unmarshal(body, &sent) != nil || json.Unmarshal(again, &read) != nil || !namesKept(sent, read) {
			t.Fatalf("accepted %q, read as %s: a member was read under another name", body, again)
		}
		for _, n := range memberNames(body) {
			var name string
			json.Unmarshal(n, &name)
			if _, data := r.ByName[name]; bytes.IndexByte(n, '\\') >= 0 && !data {
				t.Fatalf("accepted %q, whose member name %s holds an escape", body, n)
			}
		}
	})
}

// memberNames returns the member names of body, valid JSON, as sent, in
// quotes: the strings a colon follows.
func memberNames(body []byte) (names [][]byte) {
	for i := 0; i < len(body); i++ {
		if body[i] != '"' {
			continue
		}
		j := i + 1
		for ; body[j] != '"'; j++ {
			if body[j] == '\\' {
				j++
			}
		}
		if rest := bytes.TrimLeft(body[j+1:], " \t\r\n"); len(rest) > 0 && rest[0] == ':' {
			names = append(names, body[i:j+1])
		}
		i = j
	}
	return names
}

// namesKept reports whether every member name of sent, at every depth, is
// at the same place in read.
func namesKept(sent, read any) bool {
	switch sent := sent.(type) {
	case map[string]any:
		r, _ := read.(map[string]any)
		for k, v := range sent {
			if rv, ok := r[k]; !ok || !namesKept(v, rv) {
				return false
			}
		}
	case []any:
		r, _ := read.([]any)
		if len(r) != len(sent) {
			return false
		}
		for i := range sent {
			if !namesKept(sent[i], r[i]) {
				return false
			}
		}
	}
	return true
}

// FuzzClientIP: the client address is the peer's, unless the peer is a
// trusted proxy: then the rightmost X-Forwarded-For address that is not
// one (the last good hop before a malformed one, or the leftmost when all
// are trusted), or X-Real-IP without X-Forwarded-For. Never the leftmost
// when a hop right of it is untrusted: the client writes that one.
func FuzzClientIP(f *testing.F) {
	f.Add("10.0.0.1:5", "203.0.113.9, 10.0.0.2", "")
	f.Add("10.0.0.1:5", "", "198.51.100.1")
	f.Add("192.0.2.1:5", "1.1.1.1", "2.2.2.2")
	f.Add("10.0.0.1:5", "garbage, 10.0.0.3", "")
	f.Add("[::ffff:10.0.0.1]:5", "::ffff:203.0.113.1", "")
	f.Add("10.0.0.1:5", "::\n", "0") // CI found strings.TrimSpace taking the newline
	f.Add("10.0.0.1:5", "6.6.6.6, 203.0.113.9, 10.0.0.2", "")
	ips := IPResolver{Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	f.Fuzz(func(t *testing.T, remote, xff, realIP string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = remote
		if xff != "" {
			r.Header.Set("X-Forwarded-For", xff)
		}
		if realIP != "" {
			r.Header.Set("X-Real-IP", realIP)
		}
		got := ips.ClientIP(r)
		ap, err := netip.ParseAddrPort(remote)
		if err != nil {
			if got.IsValid() {
				t.Fatalf("unparseable RemoteAddr %q gave %v", remote, got)
			}
			return
		}
		want := ap.Addr().Unmap()
		if ips.trusted(want) && xff == "" {
			if a, err := netip.ParseAddr(trimSpace(realIP)); err == nil {
				want = a.Unmap()
			}
		} else if ips.trusted(want) {
			for _, hop := range slices.Backward(strings.Split(xff, ",")) {
				a, err := netip.ParseAddr(trimSpace(hop))
				if err != nil {
					break
				}
				if want = a.Unmap(); !ips.trusted(want) {
					break
				}
			}
		}
		if got != want {
			t.Fatalf("peer %v, X-Forwarded-For %q, X-Real-IP %q: ClientIP = %v; want %v", ap.Addr(), xff, realIP, got, want)
		}
	})
}

func trimSpace(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}
