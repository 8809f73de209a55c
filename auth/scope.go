package auth

import (
	"slices"
	"strings"
)

// maxScopeLen bounds a scope parameter; registered scopes are short.
const maxScopeLen = 1024

// validScopeToken reports whether s is a scope-token (RFC 6749 §3.3):
// %x21 / %x23-5B / %x5D-7E, at least one character.
func validScopeToken(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	// A byte outside ASCII decodes to a rune above 0x7E (or RuneError).
	return !strings.ContainsFunc(s, func(r rune) bool { return r < 0x21 || r == 0x22 || r == 0x5C || r > 0x7E })
}

// parseScope splits a scope parameter (space-delimited, RFC 6749 §3.3) into
// its sorted, de-duplicated tokens. It reports false for a malformed one:
// characters outside the scope-token set, or separators other than one space.
func parseScope(s string) ([]string, bool) {
	if s == "" {
		return nil, true
	}
	if len(s) > maxScopeLen {
		return nil, false
	}
	parts := strings.Split(s, " ")
	for _, p := range parts {
		if !validScopeToken(p) {
			return nil, false
		}
	}
	slices.Sort(parts)
	return slices.Compact(parts), true
}

// scopeSubset reports whether every token of want is in have.
func scopeSubset(want, have string) bool {
	w, ok := parseScope(want)
	if !ok {
		return false
	}
	h := strings.Fields(have)
	for _, s := range w {
		if !slices.Contains(h, s) {
			return false
		}
	}
	return true
}
