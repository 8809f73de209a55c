package auth

import (
	"crypto/sha256"
	"encoding/base64"
	"net/url"
	"strings"
	"testing"
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
		"http://127.0.0.1.evil/cb", "http://127.0.0.1:80@evil/cb", "http://0x7f.0.0.1/cb"} {
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
		if err != nil || g.Scheme != "http" || g.User != nil || g.Fragment != "" {
			t.Fatalf("accepted %q, which is not a loopback variant", got)
		}
		if h := g.Hostname(); h != "127.0.0.1" && h != "::1" {
			t.Fatalf("accepted %q: host %q is not a registered loopback literal", got, h)
		}
		if p := g.EscapedPath(); p != "/cb" && p != "/native" {
			t.Fatalf("accepted %q with path %q", got, p)
		}
	})
}

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
		n := normalizeScope(s)
		if normalizeScope(n) != n || !scopeSubset(n, s) || !scopeSubset(s, n) {
			t.Fatalf("normalizeScope(%q) = %q is not stable", s, n)
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

// FuzzCheckRedirectURI: a URI accepted at registration in release mode is
// absolute, has no fragment or whitespace, and is https or http loopback.
func FuzzCheckRedirectURI(f *testing.F) {
	for _, s := range []string{"https://a.example/cb", "http://127.0.0.1/cb", "http://localhost:8080/x", "http://a.example/",
		"https://a/cb#frag", "javascript:alert(1)", "com.example:/cb", "/relative", "https://", "http://[::1]/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if checkRedirectURI(s, true) != nil {
			return
		}
		u, err := url.Parse(s)
		if err != nil || !u.IsAbs() || u.Fragment != "" || strings.ContainsAny(s, " \t\r\n#") || u.Host == "" {
			t.Fatalf("release mode accepted %q", s)
		}
		if u.Scheme != "https" && !(u.Scheme == "http" && isLoopbackHost(u.Hostname())) {
			t.Fatalf("release mode accepted non-https, non-loopback %q", s)
		}
	})
}
