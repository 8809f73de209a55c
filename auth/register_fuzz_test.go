package auth

import (
	"errors"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"oauth2-api/httpx"
	"oauth2-api/store"
)

// FuzzRegistrationMetadata: whatever a registration body holds, it is
// refused with a client error, or it makes a client that `client create`
// would accept and that is third-party: no first-party or resource-server
// role, no client_credentials, no back-channel logout, redirect URIs that
// pass the registration rules, at most maxRegisteredURIs of each kind.
func FuzzRegistrationMetadata(f *testing.F) {
	f.Add(`{"client_name":"a","redirect_uris":["https://a.example/cb"]}`)                                     // the smallest valid one
	f.Add(`{"client_name":"a","redirect_uris":["https://a.example/cb"],"token_endpoint_auth_method":"none"}`) // public
	f.Add(`{"client_name":"a","grant_types":[]}`)                                                             // newClient would default to client_credentials
	f.Add(`{"client_name":"a","redirect_uris":["https://a.example/cb"],"first_party":true,"resource_server":true}`)
	f.Add(`{"client_name":"a","redirect_uris":["https://a.example/cb"],"Grant_Types":["client_credentials"]}`) // case-folded member name
	f.Add(`{"client_name":"a","redirect_uris":["javascript:alert(1)"]}`)
	f.Add(`{"client_name":"a","redirect_uris":["https://a.example/cb"],"backchannel_logout_uri":null}`)
	f.Add(`{"client_name":"a","redirect_uris":["https://a.example/cb"],"scope":"a  b"}`)
	f.Add(`{"client_name":"a","client_name":"b"}`) // a repeated key
	f.Add("null")
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest("POST", "/oauth2/register", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		m, err := readMetadata(httptest.NewRecorder(), r)
		if err == nil {
			var cl *store.Client
			var secret string
			cl, secret, err = m.client(true, true)
			if err == nil {
				switch {
				case cl.FirstParty || cl.ResourceServer || cl.BackchannelLogoutURI != "":
					t.Fatalf("%q made a client with a role: %+v", body, cl)
				case slices.Contains(cl.GrantTypes, grantClientCredentials) || len(cl.GrantTypes) == 0:
					t.Fatalf("%q made a client with grants %q", body, cl.GrantTypes)
				case len(cl.RedirectURIs) > maxRegisteredURIs || len(cl.PostLogoutRedirectURIs) > maxRegisteredURIs:
					t.Fatalf("%q made a client with %d and %d URIs", body, len(cl.RedirectURIs), len(cl.PostLogoutRedirectURIs))
				case cl.Public() != (cl.AuthMethod == authNone) || cl.Public() != (secret == ""):
					t.Fatalf("%q: public %v, method %q, secret %v", body, cl.Public(), cl.AuthMethod, secret != "")
				}
				for _, u := range append(slices.Clone(cl.RedirectURIs), cl.PostLogoutRedirectURIs...) {
					if checkRedirectURI(u, true) != nil {
						t.Fatalf("%q made a client with the redirect URI %q", body, u)
					}
				}
				return
			}
		}
		var e *httpx.Error
		if !errors.As(err, &e) || e.Status() >= 500 {
			t.Fatalf("%q: %v; want a client error", body, err)
		}
	})
}
