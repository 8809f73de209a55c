package auth

import (
	"net/mail"
	"net/netip"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Validation of user input (API.md: 422 with a message naming the field).

// validEmail: one bare address, at most 254 bytes, with a domain name: no
// domain literal (a@[10.0.0.5]) nor a bare IP address (a@10.0.0.5), which
// would have the server mail an IP address, an internal one as well. A '['
// or ']' is otherwise only in a quoted local part, and no '"' passes. No
// white space of any script: net/mail takes U+00A0 in an atom, so
// "\u00a0bob@example.com" would be a second account beside bob's. The
// domain is ASCII: an internationalized one in its A-label form
// (xn--bcher-kva.example), never its U-label (bücher.example), which names
// the same mailbox and would be a second account.
func validEmail(s string) bool {
	if len(s) > 254 || strings.ContainsAny(s, "<>\"[]") || strings.ContainsFunc(s, unicode.IsSpace) {
		return false
	}
	a, err := mail.ParseAddress(s)
	at := strings.LastIndexByte(s, '@')
	_, notIP := netip.ParseAddr(s[at+1:])
	return err == nil && a.Name == "" && a.Address == s && at >= 0 && notIP != nil && ascii(s[at+1:])
}

// ascii reports whether s is all ASCII.
func ascii(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool { return r >= utf8.RuneSelf })
}

// validUsername: 3 to 32 of letters, digits, '.', '_', '-', starting with a
// letter or digit. No '@', so a login is never both an email and a username.
// Trimming the allowed set from a string leaves nothing exactly when it
// holds no other byte.
func validUsername(s string) bool {
	const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	return len(s) >= 3 && len(s) <= 32 && strings.IndexByte(alnum, s[0]) >= 0 &&
		strings.Trim(s, alnum+"._-") == ""
}

// Password length in characters (API.md: 8 to 128).
const (
	minPassword = 8
	maxPassword = 128
)

// validPassword: 8 to 128 characters of UTF-8 without NUL. Bytes that are
// not UTF-8 (a terminal in Latin-1 at user create) could never be typed at
// a login, whose JSON or form body must be UTF-8.
func validPassword(s string) bool {
	n := utf8.RuneCountInString(s)
	return n >= minPassword && n <= maxPassword && !strings.ContainsRune(s, 0) && utf8.ValidString(s)
}

// validName: at most 100 characters, no control characters, and no format
// characters (category Cf): the bidirectional controls and the invisible
// ones (U+202E, U+2066, U+200B, U+FEFF…) would let a name shown on the
// login and consent pages read as another, or turn the page's own words
// around it (RFC 7591 §5). ZWNJ and ZWJ stay: scripts and most emoji need
// them (subdivision flags' tag characters, also Cf, do not pass).
func validName(s string) bool {
	return utf8.RuneCountInString(s) <= 100 && !strings.ContainsFunc(s, func(r rune) bool {
		return unicode.IsControl(r) || (unicode.Is(unicode.Cf, r) && r != '\u200c' && r != '\u200d')
	})
}

// Decimal returns s as a number from 0 to hi, if s is one in its one
// decimal form: "0" or digits without a leading zero, no sign. strconv
// also takes "+5", "05" and "-0", so that one user, page, age or setting
// (main's config) would have many spellings.
func Decimal(s string, hi int64) (int64, bool) {
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && n >= 0 && n <= hi && s == strconv.FormatInt(n, 10)
}

// validState: RFC 6749 Appendix A.5's VSCHAR, at most 2,048 bytes (the
// column's bound), for the authorization endpoint's state and the logout's.
// Anything else could not come back exactly (a CR is lost in the forms'
// round trip), so it is refused rather than altered, and not echoed.
func validState(s string) bool { return len(s) <= 2048 && vschar(s) }

// vschar reports whether s is VSCHAR* (RFC 6749 Appendix A: %x20-7E).
func vschar(s string) bool {
	// Any byte above 0x7e belongs to a rune (or an invalid byte's U+FFFD) above it.
	return !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r > 0x7e })
}
