package auth

import (
	"net/http"
	"slices"

	"oauth2-api/httpx"
	"oauth2-api/token"
)

// handleMetadata serves the RFC 8414 §2 document (and, with OpenID
// Connect, the discovery document: OIDC Discovery §3); registration adds
// the RFC 7591 registration endpoint. They change only with the
// configuration, so caches may keep them for an hour.
func handleMetadata(iss string, idTokens *token.Signer, published []*token.Key, requirePAR, registration bool) http.Handler {
	auth := []string{"client_secret_basic", "client_secret_post", "none"}
	m := map[string]any{
		"issuer":                                         iss,
		"authorization_endpoint":                         iss + "/oauth2/authorize",
		"token_endpoint":                                 iss + "/oauth2/token",
		"revocation_endpoint":                            iss + "/oauth2/revoke",
		"introspection_endpoint":                         iss + "/oauth2/introspect",
		"jwks_uri":                                       iss + "/.well-known/jwks.json",
		"response_types_supported":                       []string{"code"},
		"response_modes_supported":                       []string{"query"},
		"grant_types_supported":                          supportedGrants,
		"token_endpoint_auth_methods_supported":          auth,
		"revocation_endpoint_auth_methods_supported":     auth,
		"introspection_endpoint_auth_methods_supported":  []string{"client_secret_basic", "client_secret_post"},
		"code_challenge_methods_supported":               []string{"S256"},
		"authorization_response_iss_parameter_supported": true,
		"dpop_signing_alg_values_supported":              token.ProofAlgs,
		"pushed_authorization_request_endpoint":          iss + "/oauth2/par",
		"device_authorization_endpoint":                  iss + "/oauth2/device_authorization",
		"require_pushed_authorization_requests":          requirePAR,
	}
	if registration {
		m["registration_endpoint"] = iss + "/oauth2/register"
	}
	if idTokens != nil {
		m["userinfo_endpoint"] = iss + "/oauth2/userinfo"
		m["end_session_endpoint"] = iss + "/oauth2/logout"
		m["scopes_supported"] = []string{scopeOpenID, scopeProfile, scopeEmail}
		m["subject_types_supported"] = []string{"public"}
		// Every published key's algorithm, the signing key's first: during a
		// rotation to another algorithm, relying parties that keep this
		// document for its hour must take the next key's ID tokens after the
		// swap (go-oidc refuses an algorithm the metadata did not list).
		algs := []string{idTokens.Key().Alg}
		for _, k := range published {
			if !slices.Contains(algs, k.Alg) {
				algs = append(algs, k.Alg)
			}
		}
		m["id_token_signing_alg_values_supported"] = algs
		m["claims_supported"] = []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "sid",
			"email", "email_verified", "preferred_username", "given_name", "family_name", "updated_at"}
		m["backchannel_logout_supported"] = true
		m["backchannel_logout_session_supported"] = true // logout tokens carry sid, as ID tokens do
		m["prompt_values_supported"] = []string{"none", "login", "consent"}
		m["claims_parameter_supported"] = false
		m["request_parameter_supported"] = false
		m["request_uri_parameter_supported"] = false
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		httpx.JSON(w, http.StatusOK, m)
	})
}

// handleJWKS serves GET /.well-known/jwks.json (RFC 7517 §5): the public
// keys that verify our tokens, the current one first.
func handleJWKS(keys []*token.Key) http.Handler {
	list := []token.JWK{}
	for _, k := range keys {
		if k.Public() {
			list = append(list, k.JWK())
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=300")
		httpx.JSON(w, http.StatusOK, map[string]any{"keys": list})
	})
}
