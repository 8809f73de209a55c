package auth

import (
	"slices"

	"oauth2-api/httpx"
)

// Resource indicators (RFC 8707): a client may ask for a token for one of
// the configured RESOURCES, whose aud is then that resource instead of the
// ISSUER, so a resource server that checks aud refuses a token meant for
// another (and /api/v1 refuses it too). A grant (a code, then its session)
// is for one resource at most: asking for several is invalid_target (§2:
// the server may refuse what it will not issue one token for). A refresh
// may name the granted resource, never another (no widening).

var errTarget = httpx.E(httpx.KindInvalidTarget, "the resource is not one this server issues tokens for")

// errDropped refuses a grant (a code, a device request, a refresh token)
// for a resource since dropped from RESOURCES: no token is minted for an
// API the server no longer serves, as none is introspected active. It is
// invalid_grant (RFC 6749 §5.2: the grant is no longer valid), not
// invalid_target (RFC 8707 §2: a fault of the resource requested): the
// request may name none, and what the client must do is start over.
var errDropped = httpx.E(httpx.KindInvalidGrant, "the grant is for a resource this server no longer issues tokens for")

// resourceOf validates the resource parameters of a request: none, or one
// of RESOURCES.
func (ts *Tokens) resourceOf(named []string) (string, error) {
	switch {
	case len(named) == 0:
		return "", nil
	case len(named) > 1:
		return "", httpx.E(httpx.KindInvalidTarget, "one resource per authorization")
	case !slices.Contains(ts.Resources, named[0]):
		return "", errTarget
	}
	return named[0], nil
}

// audience is the resource of a token request naming named for a grant of
// granted ("" for none): the grant's own, while still one of RESOURCES,
// which the request may repeat but not change; a grant being made now
// (fresh: a code naming none, client credentials) takes the one the
// request names.
func (ts *Tokens) audience(granted string, named []string, fresh bool) (string, error) {
	r, err := ts.resourceOf(named)
	switch {
	case err == nil && granted != "" && !slices.Contains(ts.Resources, granted):
		return "", errDropped
	case err != nil || r == "" || r == granted:
		return granted, err
	case granted == "" && fresh:
		return r, nil
	}
	return "", httpx.E(httpx.KindInvalidTarget, "the resource was not granted")
}
