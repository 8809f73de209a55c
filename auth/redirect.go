package auth

import (
	"errors"
	"net"
	"net/url"
	"slices"
	"strings"

	"oauth2-api/token"
)

// shownHost is what a page tells the user a redirect URI leads to: its
// host, or the whole URI when it has none (a native app's private-use scheme).
func shownHost(uri string) string {
	if u, err := url.Parse(uri); err == nil && u.Host != "" {
		return u.Host
	}
	return uri
}

// checkRedirectURI validates a redirect or post-logout URI at registration
// (RFC 6749 §3.1.2, RFC 8252 §7). A URI has one byte form: ASCII from RFC
// 3986's character set with well-formed percent escapes, so no space,
// control or non-ASCII character that a later reader could split on or
// decode differently; no fragment (not even an empty one), no user
// information. Schemes: https; http on a loopback host; and, in debug mode
// only (API.md: release mode refuses every non-https URI but loopback),
// http on any host and a private-use scheme in reverse-domain form (RFC
// 8252 §7.1, com.example.app:/cb) for native apps. javascript, data, file
// and every other scheme are refused in every mode.
func checkRedirectURI(s string, release bool) error {
	if len(s) > 2000 {
		return errors.New("too long")
	}
	if !uriBytes(s) {
		return errors.New("must be ASCII without spaces or control characters, with valid percent escapes (RFC 3986)")
	}
	if strings.Contains(s, "#") {
		return errors.New("must not have a fragment")
	}
	u, err := url.Parse(s)
	if err != nil || !u.IsAbs() {
		return errors.New("not an absolute URI")
	}
	if u.User != nil {
		return errors.New("must not hold user information")
	}
	if !strings.HasPrefix(s, u.Scheme+":") { // url.Parse lowers it: HTTP:// is another string of the same URI
		return errors.New("its scheme must be in lower case")
	}
	// The host as a browser reaches it is the one the consent page shows:
	// url.Parse decodes %D0%B0 in a host to a Cyrillic а, which a browser
	// turns into punycode (xn--…), and the page showed appIe.com for
	// appie.com.
	if a, ok := strings.CutPrefix(s, u.Scheme+"://"); ok {
		if i := strings.IndexAny(a, "/?#"); i >= 0 {
			a = a[:i]
		}
		if strings.Contains(a, "%") || a != strings.ToLower(a) {
			return errors.New("its host must be in lower case, without escapes")
		}
	}
	switch u.Scheme {
	case "https":
	case "http":
		if release && !isLoopbackHost(u.Hostname()) {
			return errors.New("must be https (or http on a loopback address) in release mode")
		}
	default:
		if !strings.Contains(u.Scheme, ".") {
			return errors.New("scheme must be https, http, or a private-use scheme in reverse-domain form (RFC 8252 §7.1)")
		}
		if release {
			return errors.New("must be https (or http on a loopback address) in release mode")
		}
		return nil
	}
	if u.Host == "" {
		return errors.New("has no host")
	}
	if !validPort(u.Host) {
		return errors.New("has an invalid port")
	}
	// A name or an IP address: RFC 3986's reg-name also takes ';', ',' and
	// the other sub-delims, which no browser resolves, and which the pages'
	// CSP header (cspSource) read as its own syntax ("rp.example;sandbox").
	if h := u.Hostname(); net.ParseIP(h) == nil && strings.Trim(h, "abcdefghijklmnopqrstuvwxyz0123456789-._") != "" {
		return errors.New("its host must be a name (letters, digits, '-', '.', '_') or an IP address")
	}
	return nil
}

// uriChars is RFC 3986's character set: unreserved (§2.3), reserved
// (§2.2) and '%'.
const uriChars = token.Unreserved + ":/?#[]@!$&'()*+,;=%"

// uriBytes reports whether s holds only RFC 3986 characters (unreserved,
// reserved and '%'), each '%' starting a two-digit hex escape. Trimming
// the set from a string leaves nothing exactly when it holds no other
// byte; url.PathUnescape refuses exactly a '%' without two hex digits.
func uriBytes(s string) bool {
	_, err := url.PathUnescape(s)
	return strings.Trim(s, uriChars) == "" && err == nil
}

// validPort reports whether host's port, if it names one, is 1 to 65535 in
// its one decimal form; "host:" (an empty port) is not. url.Parse has
// already refused non-digits.
func validPort(host string) bool {
	_, port, err := net.SplitHostPort(host)
	if err != nil {
		return true // no port: the scheme's default
	}
	n, ok := Decimal(port, 65535)
	return ok && n >= 1
}

func isLoopbackHost(h string) bool { return h == "localhost" || isLoopbackIP(h) }

// isLoopbackIP reports whether h is a loopback IP address literal.
func isLoopbackIP(h string) bool {
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// matchRedirectURI returns the registered URI that got matches: exactly
// (string comparison), or, for a registered http loopback IP literal, the
// same URI with any port (RFC 8252 §7.3: native apps listen on an ephemeral
// port), the rest of it byte for byte (RFC 9700 §2.1: HTTP://, or an empty
// query's "?", is another string).
func matchRedirectURI(registered []string, got string) bool {
	if slices.Contains(registered, got) {
		return true
	}
	// The loopback exception varies the port only: the rest is held to
	// the registration rules (no fragment, not even an empty one), and the
	// port must be one a listener can have.
	if !uriBytes(got) || strings.Contains(got, "#") {
		return false
	}
	g, ok := loopbackWithoutPort(got)
	return ok && slices.ContainsFunc(registered, func(r string) bool {
		rg, ok := loopbackWithoutPort(r)
		return ok && rg == g
	})
}

// loopbackWithoutPort returns s, an http URI of a loopback IP literal,
// without its port, as a string.
func loopbackWithoutPort(s string) (string, bool) {
	u, err := url.Parse(s)
	if err != nil || u.User != nil || !validPort(u.Host) || !isLoopbackIP(u.Hostname()) || !strings.HasPrefix(s, "http://"+u.Host) {
		return "", false
	}
	host := u.Hostname()
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return "http://" + host + s[len("http://"+u.Host):], true
}
