// Package fuzz holds fuzz targets that cross packages: they drive the whole
// HTTP handler (auth.NewHandler over a real SQLite file) with hostile forms
// and queries. Targets for a single parser sit beside it: token.FuzzParse,
// token.FuzzParseAsymmetric, token.FuzzClaimsJSON, token.FuzzCheckKeys,
// token.FuzzParseProof, token.FuzzSameHTU, auth.FuzzParseBasic, auth.FuzzMatchRedirectURI,
// auth.FuzzCheckRedirectURI, auth.FuzzRegisteredURIsReadBack, auth.FuzzParseScope, auth.FuzzPKCE,
// auth.FuzzParsePHC, auth.FuzzRegistrationMetadata, auth.FuzzNormalizeUserCode, auth.FuzzValidEmail,
// auth.FuzzStampOK, httpx.FuzzUnmarshalStrict, httpx.FuzzClientIP, store.FuzzParseURL,
// store.FuzzAuditCanonical, metrics.FuzzLabelValue. `make fuzz` runs them all;
// TestDocNamesEveryTarget keeps this list whole.
//
// # Security
//
// The targets check properties, not only the absence of a panic: no 5xx,
// no body holding a stack trace, SQL text or a secret, and the one byte
// form of what a parser accepts.
package fuzz
