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
// granted ("" for none): the grant's own, which the request may repeat but
// not change; a grant being made now (fresh: a code naming none, client
// credentials) takes the one the request names.
func (ts *Tokens) audience(granted string, named []string, fresh bool) (string, error) {
	r, err := ts.resourceOf(named)
	switch {
	case err != nil || r == "" || r == granted:
		return granted, err
	case granted == "" && fresh:
		return r, nil
	}
	return "", httpx.E(httpx.KindInvalidTarget, "the resource was not granted")
}
