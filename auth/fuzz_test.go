package auth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"net/mail"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"oauth2-api/store"
	"oauth2-api/store/storetest"
	"oauth2-api/token"
)

// FuzzParseBasic: whatever parses re-encodes (RFC 6749 §2.3.1) to a header
// that parses to the same credentials; nothing panics.
func FuzzParseBasic(f *testing.F) {
	enc := func(s string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(s)) }
	f.Add(enc("client:secret"))
	f.Add(enc("a%3Ab:c+d%25"))     // escaped colon, plus as space
	f.Add(enc("a:b:c"))            // a colon in the secret
	f.Add(enc(":"))                // empty id
	f.Add("Basic " + "YWJj")       // no colon
	f.Add("Basic YWJjOmRlZg")      // unpadded
	f.Add("basic   " + enc("x:y")) // odd spacing
	f.Fuzz(func(t *testing.T, h string) {
		id, secret, ok := parseBasic(h)
		if !ok {
			if id != "" || secret != "" {
				t.Fatalf("parseBasic(%q) failed but returned %q, %q", h, id, secret)
			}
			return
		}
		again := enc(url.QueryEscape(id) + ":" + url.QueryEscape(secret))
		id2, secret2, ok2 := parseBasic(again)
		if !ok2 || id2 != id || secret2 != secret {
			t.Fatalf("round trip of %q: %q, %q, %v; want %q, %q", h, id2, secret2, ok2, id, secret)
		}
	})
}

// FuzzMatchRedirectURI: an accepted redirect URI is a registered one, or
// (RFC 8252 §7.3) a registered http loopback IP URI with only the port
// changed; it can never lead to another host.
func FuzzMatchRedirectURI(f *testing.F) {
	registered := []string{"https://app.example/cb", "http://127.0.0.1/cb", "http://[::1]/native"}
	for _, s := range []string{"https://app.example/cb", "https://app.example/cb/", "https://APP.example/cb",
		"https://app.example.evil/cb", "https://app.example@evil/cb", "http://127.0.0.1:8080/cb",
		"http://127.0.0.1:8080/cb?x", "http://127.0.0.1:8080/cb#f", "http://[::1]:1/native", "//evil/cb",
		"http://127.0.0.1.evil/cb", "http://127.0.0.1:80@evil/cb", "http://0x7f.0.0.1/cb",
		"http://127.0.0.1:8080/cb#", "http://127.0.0.1:0/cb", "http://127.0.0.1:65536/cb", "http://127.0.0.1:99999999999/cb",
		"http://127.0.0.1:/cb", "http://127.0.0.1:080/cb", "http://127.0.0.1:8080/c%62",
		"HTTP://127.0.0.1:4444/cb", "http://127.0.0.1:4444/cb?", "http://127.0.0.1:4444/native"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, got string) {
		if !matchRedirectURI(registered, got) {
			return
		}
		for _, r := range registered {
			if r == got {
				return
			}
		}
		g, err := url.Parse(got)
		if err != nil || g.Scheme != "http" || g.User != nil || strings.Contains(got, "#") {
			t.Fatalf("accepted %q, which is not a loopback variant", got)
		}
		if n, err := strconv.Atoi(g.Port()); g.Port() != "" && (err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != g.Port()) || strings.HasSuffix(g.Host, ":") {
			t.Fatalf("accepted %q, whose port no listener can have", got)
		}
		if h := g.Hostname(); h != "127.0.0.1" && h != "::1" {
			t.Fatalf("accepted %q: host %q is not a registered loopback literal", got, h)
		}
		if p := g.EscapedPath(); p != "/cb" && p != "/native" {
			t.Fatalf("accepted %q with path %q", got, p)
		}
		// Byte for byte but the port: without it, a registered string
		// (HTTP://, an empty query's "?" or /native on 127.0.0.1 is not).
		if !slices.Contains(registered, loopbackPort.ReplaceAllString(got, "$1")) {
			t.Fatalf("accepted %q, which without its port is no registered URI", got)
		}
	})
}

// loopbackPort matches the scheme, loopback host and port of an http
// loopback URI, the port dropped by replacing the match with $1.
var loopbackPort = regexp.MustCompile(`^(http://(?:127\.0\.0\.1|\[::1\])):[0-9]+`)

// FuzzParseScope: accepted scopes are sorted, unique, valid scope-tokens,
// and normalising is idempotent.
func FuzzParseScope(f *testing.F) {
	for _, s := range []string{"", "read", "read write", "write read read", "a  b", " a", "a\tb", `a"b`, "a\\b", "é", strings.Repeat("x ", 600)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		parts, ok := parseScope(s)
		if !ok {
			return
		}
		for i, p := range parts {
			if !validScopeToken(p) || (i > 0 && parts[i-1] >= p) {
				t.Fatalf("parseScope(%q) = %q: invalid or unsorted", s, parts)
			}
		}
		n := strings.Join(parts, " ")
		again, ok := parseScope(n)
		if !ok || strings.Join(again, " ") != n || !scopeSubset(n, s) || !scopeSubset(s, n) {
			t.Fatalf("parseScope(%q) joins to %q, which does not parse back to itself", s, n)
		}
	})
}

// FuzzPKCE: a valid verifier always matches its own S256 challenge and
// never a challenge of another verifier.
func FuzzPKCE(f *testing.F) {
	f.Add("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM") // RFC 7636 Appendix B
	f.Add(strings.Repeat("a", 43), strings.Repeat("a", 43))
	f.Add(strings.Repeat("~", 129), "")
	f.Fuzz(func(t *testing.T, verifier, challenge string) {
		sum := sha256.Sum256([]byte(verifier))
		own := base64.RawURLEncoding.EncodeToString(sum[:])
		if validVerifier(verifier) && !verifierOK(verifier, own) {
			t.Fatalf("verifier %q does not match its own challenge", verifier)
		}
		if verifierOK(verifier, challenge) != (challenge == own) {
			t.Fatalf("verifierOK(%q, %q) disagrees with S256", verifier, challenge)
		}
		if validChallenge(challenge) && len(challenge) != 43 {
			t.Fatalf("validChallenge(%q) with length %d", challenge, len(challenge))
		}
	})
}

// TestPKCEVector is RFC 7636 Appendix B.
func TestPKCEVector(t *testing.T) {
	if !verifierOK("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM") {
		t.Fatal("RFC 7636 Appendix B example does not verify")
	}
	if verifierOK("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXl", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM") {
		t.Fatal("a changed verifier verifies")
	}
}

// FuzzCheckRedirectURI: a URI accepted at registration in release mode has
// one byte form (RFC 3986 ASCII, no fragment, no user information, a valid
// port) and is https or http on loopback; whatever release mode accepts,
// debug mode accepts too.
func FuzzCheckRedirectURI(f *testing.F) {
	for _, s := range []string{"https://a.example/cb", "http://127.0.0.1/cb", "http://localhost:8080/x", "http://a.example/",
		"https://a/cb#frag", "https://a/cb#", "javascript:alert(1)", "com.example:/cb", "/relative", "https://", "http://[::1]/",
		"https://a.example/cb\u00a0http://evil.example/", "https://a.example/%zz", "http://127.0.0.1:0/cb", "http://127.0.0.1:/cb",
		"https://user@a.example/", "data:text/html,x", "file:///etc/passwd"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if checkRedirectURI(s, true) != nil {
			return
		}
		if checkRedirectURI(s, false) != nil {
			t.Fatalf("release mode accepted %q, debug mode did not", s)
		}
		u, err := url.Parse(s)
		if err != nil || !u.IsAbs() || u.User != nil || !uriBytes(s) || strings.Contains(s, "#") {
			t.Fatalf("release mode accepted %q", s)
		}
		for _, r := range s {
			if r <= ' ' || r >= 0x7f {
				t.Fatalf("release mode accepted %q, with %U", s, r)
			}
		}
		ip, err := netip.ParseAddr(u.Hostname()) // not isLoopbackHost, which is under test
		if u.Scheme != "https" && !(u.Scheme == "http" && (u.Hostname() == "localhost" || err == nil && ip.IsLoopback())) {
			t.Fatalf("release mode accepted %q: scheme %q", s, u.Scheme)
		}
		if u.Host == "" || !validPort(u.Host) {
			t.Fatalf("release mode accepted %q without a valid host and port", s)
		}
	})
}

// FuzzRegisteredURIsReadBack: what client create accepts is stored and read
// back byte for byte (a JSON array, never split on what a reader might take
// for a space), and each URI it reads back matches itself at the
// authorization endpoint.
func FuzzRegisteredURIsReadBack(f *testing.F) {
	db := storetest.Open(f, store.SQLite)
	for _, s := range []string{"https://app.example/cb", "https://app.example/cb\u00a0http://evil.example/",
		"https://app.example/cb\u2028x", "http://127.0.0.1/cb?a=1&b=%20", "com.example.app:/cb", "https://a.example/\"x\"",
		"https://a.example/[]@!$&'()*+,;=", "https://a.example/%E2%80%A8"} {
		f.Add(s, "https://b.example/cb")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		c, _, err := CreateClient(context.Background(), db, 0, ClientSpec{Name: "fuzz", Public: true,
			RedirectURIs: []string{a, b}, PostLogoutRedirectURIs: []string{b, a}}, false, nil, time.Now())
		if err != nil {
			return
		}
		got, err := db.ClientByID(context.Background(), c.ID)
		if err != nil {
			t.Fatal(err)
		}
		want := slices.Compact([]string{a, b})
		if !slices.Equal(got.RedirectURIs, want) || !slices.Equal(got.PostLogoutRedirectURIs, []string{b, a}) {
			t.Fatalf("registered %q, %q; read back %q and %q", a, b, got.RedirectURIs, got.PostLogoutRedirectURIs)
		}
		for _, u := range want {
			if !matchRedirectURI(got.RedirectURIs, u) {
				t.Fatalf("registered %q does not match itself", u)
			}
		}
	})
}

// FuzzNormalizeUserCode: an accepted code is UserCodeLen letters of the
// alphabet, and the code, its shown form and that in lower case all
// normalize back to it (so normalizing is idempotent).
func FuzzNormalizeUserCode(f *testing.F) {
	f.Add("BCDF-GHJK")             // the shown form
	f.Add("bcdf ghjk")             // lower case, a space for the dash
	f.Add("BCDF\u2014GHJK")        // an em dash: every Pd is dropped
	f.Add("BCDFGHJK\u00a0")        // a no-break space: unicode.IsSpace
	f.Add("\u00dfCDFGHJK")         // ß, which full case mapping upper-cases to SS
	f.Add("BCDF-GHJ\u212a")        // the Kelvin sign, which folds to K
	f.Add(strings.Repeat("-", 65)) // over the length cap
	f.Fuzz(func(t *testing.T, s string) {
		c, ok := normalizeUserCode(s)
		if !ok {
			return
		}
		if len(c) != token.UserCodeLen || strings.Trim(c, token.UserCodeAlphabet) != "" {
			t.Fatalf("normalizeUserCode(%q) = %q", s, c)
		}
		for _, v := range []string{c, showUserCode(c), strings.ToLower(showUserCode(c))} {
			if d, ok := normalizeUserCode(v); !ok || d != c {
				t.Fatalf("normalizeUserCode(%q) = %q, but normalizeUserCode(%q) = %q, %v", s, c, v, d, ok)
			}
		}
	})
}

// FuzzValidEmail: an accepted (folded) address is its own fold, one that
// net/mail reads back unchanged, with no white space, line break, angle
// bracket or quote (SMTP RCPT, the To header), and an ASCII domain that is
// no IP address.
func FuzzValidEmail(f *testing.F) {
	f.Add("ann@example.com")   // good
	f.Add("a@[10.0.0.1]")      // a domain literal
	f.Add("a@10.0.0.1")        // a bare IP address
	f.Add("\u00a0a@b.example") // net/mail takes U+00A0 in an atom
	f.Add(`"a b"@c.example`)   // a quoted local part
	f.Add("a@b\u212a.example") // the Kelvin sign, which folds to k
	f.Add("(c)a@b.example")    // a comment
	f.Add("a@b.example.")      // a trailing dot
	f.Add("\u0130@b.example")  // İ, whose lower case is two runes
	f.Add("Ann <a@b.example>") // a display name
	f.Fuzz(func(t *testing.T, s string) {
		e := foldEmail(s)
		if !validEmail(e) {
			return
		}
		if foldEmail(e) != e || len(e) > 254 || strings.ContainsAny(e, " \t\r\n<>\"") {
			t.Fatalf("validEmail accepted %q (from %q)", e, s)
		}
		if a, err := mail.ParseAddress(e); err != nil || a.Address != e {
			t.Fatalf("validEmail accepted %q: net/mail reads %v, %v", e, a, err)
		}
		dom := e[strings.LastIndexByte(e, '@')+1:]
		if _, err := netip.ParseAddr(dom); err == nil || !ascii(dom) || dom == "" {
			t.Fatalf("validEmail accepted %q, with domain %q", e, dom)
		}
	})
}

// FuzzStampOK: a stamp is accepted only in the exact form stamp makes.
func FuzzStampOK(f *testing.F) {
	b := &Browser{Key: []byte("k")}
	now := time.Unix(1_700_000_000, 0)
	good := b.stamp("login", "v", now)
	f.Add("v", good)                         // accepted
	f.Add("v", "+"+good)                     // ParseInt takes a sign
	f.Add("v", "0"+good)                     // and a leading zero
	f.Add("w", good)                         // another value
	f.Add("v", b.stamp("consent", "v", now)) // another purpose
	f.Add("v", good[:len(good)-1])           // a cut MAC
	f.Fuzz(func(t *testing.T, v, posted string) {
		if !b.stampOK("login", v, posted, now, time.Hour) {
			return
		}
		at, _, _ := strings.Cut(posted, ".")
		sec, err := strconv.ParseInt(at, 10, 64)
		if err != nil || posted != b.stamp("login", v, time.Unix(sec, 0)) {
			t.Fatalf("stampOK accepted %q for %q, which is not the form stamp makes", posted, v)
		}
	})
}
