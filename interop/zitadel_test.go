package interop

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	zclient "github.com/zitadel/oidc/v3/pkg/client"
	"github.com/zitadel/oidc/v3/pkg/client/rp"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"golang.org/x/oauth2"
)

// OpenID Connect with github.com/zitadel/oidc (v3) as the relying party:
// its discovery, its authorization URL with PKCE, its code exchange, which
// verifies the ID token (signature against the JWKS, issuer, audience,
// nonce, at_hash), its refresh and UserInfo calls, and its RP-Initiated
// Logout (rp.EndSession, which POSTs id_token_hint from the relying party's
// back end). The relying party also runs a back-channel logout endpoint;
// each logout token it receives is checked with zitadel/oidc's own
// verification functions against the server's JWKS (Back-Channel Logout
// 1.0 §2.6). zitadel/oidc has no ready-made logout token verifier for a
// relying party, so verifyLogoutToken puts its parts together the way its
// rp.VerifyIDToken does for ID tokens.

// backchannelLogoutEvent is the one member of a logout token's events
// claim (Back-Channel Logout 1.0 §2.4).
const backchannelLogoutEvent = "http://schemas.openid.net/event/backchannel-logout"

// logoutDelivery is one request the back-channel logout endpoint received.
type logoutDelivery struct {
	token string
	err   error // what was wrong with the request itself
}

// newLogoutReceiver runs a relying party's back-channel logout endpoint on
// loopback and returns its URL. It takes a POST of an
// application/x-www-form-urlencoded body holding one logout_token
// (Back-Channel Logout 1.0 §2.5), answers 200 with Cache-Control: no-store
// (§2.8), and reports each delivery on the channel.
func newLogoutReceiver(t testing.TB) (string, <-chan logoutDelivery) {
	t.Helper()
	got := make(chan logoutDelivery, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/backchannel-logout" {
			http.NotFound(w, r)
			return
		}
		var d logoutDelivery
		switch {
		case r.Method != http.MethodPost:
			d.err = fmt.Errorf("back-channel logout by %s; want POST", r.Method)
		case r.Header.Get("Content-Type") != "application/x-www-form-urlencoded":
			d.err = fmt.Errorf("back-channel logout with Content-Type %q; want application/x-www-form-urlencoded", r.Header.Get("Content-Type"))
		default:
			if err := r.ParseForm(); err != nil {
				d.err = fmt.Errorf("back-channel logout body: %v", err)
			} else if v := r.PostForm["logout_token"]; len(v) != 1 || len(r.PostForm) != 1 || len(r.URL.RawQuery) != 0 {
				d.err = fmt.Errorf("back-channel logout form %d fields, %d logout_token, query %q; want exactly one logout_token in the body", len(r.PostForm), len(v), r.URL.RawQuery)
			} else {
				d.token = v[0]
			}
		}
		got <- d
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/backchannel-logout", got
}

// nextLogout waits for the next back-channel delivery (the server sends
// them off the request path, so it may come a little after the request that
// ended the sign-in).
func nextLogout(t testing.TB, got <-chan logoutDelivery, after string) string {
	t.Helper()
	select {
	case d := <-got:
		if d.err != nil {
			t.Fatalf("after %s: %v", after, d.err)
		}
		return d.token
	case <-time.After(15 * time.Second):
		t.Fatalf("after %s, the relying party's back-channel logout endpoint received nothing within 15s", after)
		return ""
	}
}

// verifyLogoutToken validates a logout token as Back-Channel Logout 1.0
// §2.6 asks a relying party to, with zitadel/oidc's functions and the
// relying party's own ID token verifier v (its issuer, client id and the
// remote key set on the server's JWKS): the signature with an algorithm of
// the discovery document, iss, aud, iat and exp as for an ID token; then
// the typ header logout+jwt (§2.4), an events claim with the back-channel
// logout event as a JSON object, a sid or sub, and no nonce.
func verifyLogoutToken(ctx context.Context, v *rp.IDTokenVerifier, raw string) (*oidc.LogoutTokenClaims, error) {
	var lt oidc.LogoutTokenClaims
	payload, err := oidc.ParseToken(raw, &lt)
	if err != nil {
		return nil, err
	}
	var std oidc.TokenClaims // the registered claims, which oidc's checks read
	if err := json.Unmarshal(payload, &std); err != nil {
		return nil, err
	}
	if err := oidc.CheckIssuerWithISSVerifier(&std, v.Issuer, v.ISS); err != nil {
		return nil, err
	}
	if err := oidc.CheckAudience(&std, v.ClientID); err != nil {
		return nil, err
	}
	if err := oidc.CheckSignature(ctx, raw, payload, &std, v.SupportedSignAlgs, v.KeySet); err != nil {
		return nil, err
	}
	if err := oidc.CheckExpiration(&std, v.Offset); err != nil {
		return nil, err
	}
	if err := oidc.CheckIssuedAt(&std, v.MaxAgeIAT, v.Offset); err != nil {
		return nil, err
	}
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{std.SignatureAlg})
	if err != nil {
		return nil, err
	}
	if typ := jws.Signatures[0].Protected.ExtraHeaders[jose.HeaderType]; typ != "logout+jwt" {
		return nil, fmt.Errorf("logout token typ %v; want logout+jwt (Back-Channel Logout 1.0 §2.4)", typ)
	}
	if ev, ok := lt.Events[backchannelLogoutEvent].(map[string]any); !ok || len(lt.Events) != 1 {
		return nil, fmt.Errorf("logout token events %v (event %v); want exactly {%q: {}}", lt.Events, ev, backchannelLogoutEvent)
	}
	if lt.SessionID == "" && lt.Subject == "" {
		return nil, errors.New("logout token has neither sid nor sub (§2.4)")
	}
	if _, ok := lt.Claims["nonce"]; ok {
		return nil, errors.New("logout token has a nonce (§2.4: it must not, so it cannot pass for an ID token)")
	}
	if lt.JWTID == "" {
		return nil, errors.New("logout token has no jti (§2.4)")
	}
	return &lt, nil
}

// oidcError returns the RFC 6749 §5.2 error code of a zitadel/oidc call
// that failed with an *oidc.Error, or "".
func oidcError(err error) string {
	var e *oidc.Error
	if errors.As(err, &e) {
		return string(e.ErrorType)
	}
	return ""
}

// TestZitadelRelyingParty is zitadel/oidc's relying party against the
// server, on SQLite and PostgreSQL: discovery, the code flow with PKCE and
// a nonce driven by a cookie-keeping user agent, the code exchange with the
// ID token verified by zitadel, UserInfo, refresh (rotation; an ID token,
// if the answer has one, verified), rp.EndSession from the relying party's back end, which
// must end the user's sign-in (the next authorization asks for the password
// again), redirect to the registered post_logout_redirect_uri with state,
// and send a logout token with the ID token's sid to the back-channel
// logout URI. Then a password change through another REST session ends the
// new sign-in: a second logout token, the relying party's refresh token
// refused, and the next authorization needs the new password.
func TestZitadelRelyingParty(t *testing.T) {
	t.Parallel()
	databases(t, func(t *testing.T, databaseURL string) {
		t.Parallel()
		key := generateKey(t, "RS256")
		backchannelURI, logouts := newLogoutReceiver(t)
		s := startServer(t, map[string]string{"DATABASE_URL": databaseURL, "SIGNING_KEY": key.Path})
		const (
			redirectURI   = "http://127.0.0.1/zitadel/callback"
			postLogoutURI = "http://127.0.0.1/zitadel/signed-out"
			newPassword   = "staple battery horse correct, again"
		)
		app := s.createClient(t, "--name", "Interop zitadel RP", "--redirect-uri", redirectURI, "--scope", "openid profile email",
			"--post-logout-redirect-uri", postLogoutURI, "--backchannel-logout-uri", backchannelURI)
		other := s.createClient(t, "--name", "Another RP", "--redirect-uri", redirectURI, "--scope", "openid")
		ada := s.createUser(t, "ada.zitadel@example.com", "ada_zitadel", password, "--first-name", "Ada", "--last-name", "Lovelace")
		s.noLog(newPassword)
		ctx := oauthContext(t)

		// Discovery, as zitadel reads it (it checks that issuer is s.URL exactly).
		disc, err := zclient.Discover(ctx, s.URL, testClient(t))
		if err != nil {
			t.Fatalf("zitadel client.Discover: %v", err)
		}
		if disc.EndSessionEndpoint != s.URL+"/oauth2/logout" || disc.UserinfoEndpoint != s.URL+"/oauth2/userinfo" ||
			disc.JwksURI != s.URL+"/.well-known/jwks.json" || disc.TokenEndpoint != s.URL+"/oauth2/token" {
			t.Errorf("discovery endpoints: end_session %q, userinfo %q, jwks %q, token %q", disc.EndSessionEndpoint, disc.UserinfoEndpoint, disc.JwksURI, disc.TokenEndpoint)
		}
		if !disc.BackChannelLogoutSupported || !disc.BackChannelLogoutSessionSupported {
			t.Errorf("discovery: backchannel_logout_supported %v, backchannel_logout_session_supported %v; want both true",
				disc.BackChannelLogoutSupported, disc.BackChannelLogoutSessionSupported)
		}
		if !slices.Contains(disc.CodeChallengeMethodsSupported, oidc.CodeChallengeMethodS256) || !slices.Contains(disc.IDTokenSigningAlgValuesSupported, "RS256") {
			t.Errorf("discovery: code_challenge_methods %v, id_token_signing_alg_values %v; want S256 and RS256",
				disc.CodeChallengeMethodsSupported, disc.IDTokenSigningAlgValuesSupported)
		}

		var nonce string // the nonce of the authorization in progress, for zitadel's ID token check
		relying, err := rp.NewRelyingPartyOIDC(ctx, s.URL, app.ID, app.Secret, redirectURI,
			[]string{oidc.ScopeOpenID, oidc.ScopeProfile, oidc.ScopeEmail},
			rp.WithHTTPClient(testClient(t)), // the relying party's back end: it holds no cookie of the user
			rp.WithVerifierOpts(rp.WithNonce(func(context.Context) string { return nonce })),
			rp.WithSigningAlgsFromDiscovery())
		if err != nil {
			t.Fatalf("zitadel rp.NewRelyingPartyOIDC: %v", err)
		}
		if relying.GetEndSessionEndpoint() != disc.EndSessionEndpoint || relying.UserinfoEndpoint() != disc.UserinfoEndpoint {
			t.Errorf("relying party endpoints %q, %q; want those of discovery", relying.GetEndSessionEndpoint(), relying.UserinfoEndpoint())
		}
		otherRP, err := rp.NewRelyingPartyOIDC(ctx, s.URL, other.ID, other.Secret, redirectURI, []string{oidc.ScopeOpenID},
			rp.WithHTTPClient(testClient(t)), rp.WithSigningAlgsFromDiscovery())
		if err != nil {
			t.Fatalf("zitadel rp.NewRelyingPartyOIDC for another client: %v", err)
		}

		// The person's browser: it keeps the server's cookies.
		ua := newUserAgent(t, s)
		signIn := func(pw string) (authResult, *oidc.Tokens[*oidc.IDTokenClaims]) {
			t.Helper()
			verifier, state := oauth2.GenerateVerifier(), randomHex(16)
			nonce = randomHex(16)
			authURL := rp.AuthURL(state, relying, rp.WithCodeChallenge(oidc.NewSHACodeChallenge(verifier)), rp.AuthURLOpt(rp.WithURLParam("nonce", nonce)))
			res := ua.authorize(authURL, ada.Username, pw, "allow")
			code := res.Query.Get("code")
			if code == "" || res.Query.Get("state") != state || res.Query.Get("iss") != s.URL {
				t.Fatalf("redirect after pages %q: query %v; want a code, state %q and iss %q", res.Pages, res.Query, state, s.URL)
			}
			s.noLog(code, verifier)
			tokens, err := rp.CodeExchange[*oidc.IDTokenClaims](ctx, code, relying, rp.WithCodeVerifier(verifier))
			if err != nil {
				t.Fatalf("zitadel rp.CodeExchange (with its ID token verification): %v", err)
			}
			s.noLog(tokens.AccessToken, tokens.RefreshToken, tokens.IDToken)
			return res, tokens
		}

		started := time.Now().Truncate(time.Second)
		res, tokens := signIn(password)
		if strings.Join(res.Pages, ",") != "login,consent" {
			t.Errorf("pages of the first authorization %q; want login,consent", res.Pages)
		}
		id := tokens.IDTokenClaims
		if id.Issuer != s.URL || id.Subject != ada.Sub() || !slices.Equal(id.Audience, []string{app.ID}) || id.Nonce != nonce ||
			id.SignatureAlg != jose.RS256 || id.AccessTokenHash == "" || id.SessionID == "" {
			t.Errorf("ID token iss %q sub %q aud %q nonce %q alg %q at_hash %q sid %q; want %s, %s, [%s], %s, RS256, an at_hash and a sid",
				id.Issuer, id.Subject, id.Audience, id.Nonce, id.SignatureAlg, id.AccessTokenHash, id.SessionID, s.URL, ada.Sub(), app.ID, nonce)
		}
		if at := id.AuthTime.AsTime(); at.Before(started) || at.After(time.Now().Add(10*time.Second)) {
			t.Errorf("ID token auth_time %v; want the sign-in, at or after %v", at, started)
		}
		if id.Email != ada.Email || bool(id.EmailVerified) {
			t.Errorf("ID token email %q, email_verified %v; want %s, false", id.Email, id.EmailVerified, ada.Email)
		}
		if h := jwtHeader(t, tokens.IDToken); h["kid"] != key.KID {
			t.Errorf("ID token kid %v; want %s", h["kid"], key.KID)
		}
		// The same ID token, checked by another client's relying party: not its audience.
		if _, err := rp.VerifyIDToken[*oidc.IDTokenClaims](ctx, tokens.IDToken, otherRP.IDTokenVerifier()); !errors.Is(err, oidc.ErrAudience) {
			t.Errorf("another client's verifier on this ID token: %v; want %v", err, oidc.ErrAudience)
		}

		// UserInfo (OIDC Core §5.3), by zitadel, which checks sub against the ID token's.
		info, err := rp.Userinfo[*oidc.UserInfo](ctx, tokens.AccessToken, tokens.TokenType, id.Subject, relying)
		if err != nil {
			t.Fatalf("zitadel rp.Userinfo: %v", err)
		}
		if info.Email != ada.Email || bool(info.EmailVerified) || info.PreferredUsername != ada.Username || info.GivenName != "Ada" || info.FamilyName != "Lovelace" {
			t.Errorf("UserInfo email %q (verified %v), preferred_username %q, given %q, family %q; want %s (false), %s, Ada, Lovelace",
				info.Email, info.EmailVerified, info.PreferredUsername, info.GivenName, info.FamilyName, ada.Email, ada.Username)
		}

		// Refresh (OIDC Core §12): a new access token and a rotated refresh token.
		refreshed, err := rp.RefreshTokens[*oidc.IDTokenClaims](ctx, relying, tokens.RefreshToken, "", "")
		if err != nil {
			t.Fatalf("zitadel rp.RefreshTokens: %v", err)
		}
		s.noLog(refreshed.AccessToken, refreshed.RefreshToken, refreshed.IDToken)
		if refreshed.AccessToken == "" || refreshed.AccessToken == tokens.AccessToken || refreshed.RefreshToken == "" || refreshed.RefreshToken == tokens.RefreshToken {
			t.Errorf("refresh gave a new access token %v and a new refresh token %v; want both", refreshed.AccessToken != tokens.AccessToken, refreshed.RefreshToken != tokens.RefreshToken)
		}
		// An ID token on refresh is optional (OIDC Core §12.2); if one comes,
		// zitadel has verified it, and it must name the same user and sign-in.
		if refreshed.IDToken != "" && (refreshed.IDTokenClaims.Subject != ada.Sub() || refreshed.IDTokenClaims.SessionID != id.SessionID) {
			t.Errorf("refreshed ID token sub %q sid %q; want %s and the sign-in's %s", refreshed.IDTokenClaims.Subject, refreshed.IDTokenClaims.SessionID, ada.Sub(), id.SessionID)
		}
		if info, err := rp.Userinfo[*oidc.UserInfo](ctx, refreshed.AccessToken, refreshed.TokenType, id.Subject, relying); err != nil || info.Email != ada.Email {
			t.Errorf("UserInfo with the refreshed access token: %v, %+v", err, info)
		}

		// RP-Initiated Logout by zitadel: a POST from the relying party's back
		// end with id_token_hint, client_id, post_logout_redirect_uri, state.
		state := randomHex(16)
		loc, err := rp.EndSession(ctx, relying, tokens.IDToken, postLogoutURI, state, "", nil)
		if err != nil {
			t.Fatalf("zitadel rp.EndSession: %v", err)
		}
		if loc == nil || loc.String() != postLogoutURI+"?state="+state {
			t.Errorf("rp.EndSession redirects to %v; want %s?state=%s", loc, postLogoutURI, state)
		}
		raw := nextLogout(t, logouts, "rp.EndSession")
		s.noLog(raw)
		lt, err := verifyLogoutToken(ctx, relying.IDTokenVerifier(), raw)
		if err != nil {
			t.Fatalf("the logout token after rp.EndSession does not verify: %v", err)
		}
		if lt.SessionID != id.SessionID || lt.Subject != ada.Sub() || lt.Issuer != s.URL || !slices.Equal(lt.Audience, []string{app.ID}) {
			t.Errorf("logout token sid %q sub %q iss %q aud %q; want the ID token's sid %s, %s, %s, [%s]",
				lt.SessionID, lt.Subject, lt.Issuer, lt.Audience, id.SessionID, ada.Sub(), s.URL, app.ID)
		}
		if h := jwtHeader(t, raw); h["kid"] != key.KID || h["alg"] != "RS256" {
			t.Errorf("logout token header %v; want alg RS256, kid %s", h, key.KID)
		}
		// The checks can fail: another client's verifier, a changed
		// signature, and an ID token offered as a logout token are refused.
		if _, err := verifyLogoutToken(ctx, otherRP.IDTokenVerifier(), raw); !errors.Is(err, oidc.ErrAudience) {
			t.Errorf("another client's verifier on the logout token: %v; want %v", err, oidc.ErrAudience)
		}
		if _, err := verifyLogoutToken(ctx, relying.IDTokenVerifier(), tamper(raw)); !errors.Is(err, oidc.ErrSignatureInvalid) {
			t.Errorf("a logout token with a changed signature: %v; want %v", err, oidc.ErrSignatureInvalid)
		}
		if _, err := verifyLogoutToken(ctx, relying.IDTokenVerifier(), tokens.IDToken); err == nil {
			t.Errorf("an ID token passes for a logout token")
		}

		// The sign-in has ended: the next authorization asks for the password.
		res, tokens2 := signIn(password)
		if len(res.Pages) == 0 || res.Pages[0] != "login" {
			t.Fatalf("after rp.EndSession, the next authorization went through pages %q; want the login page first (signed out)", res.Pages)
		}
		id2 := tokens2.IDTokenClaims
		if id2.SessionID == "" || id2.SessionID == id.SessionID {
			t.Errorf("the new sign-in's sid %q; want a new one (the old was %s)", id2.SessionID, id.SessionID)
		}

		// A password change from another session (a REST login) ends this
		// sign-in too (API.md "Sessions and revocation").
		rest, _ := s.restLogin(t, ada.Username, password)
		if code, body := s.restJSON(t, http.MethodPost, "/api/v1/profile/password", rest,
			map[string]string{"current_password": password, "new_password": newPassword}); code != http.StatusNoContent {
			t.Fatalf("POST /api/v1/profile/password: %d %v; want 204", code, body)
		}
		raw = nextLogout(t, logouts, "the password change")
		s.noLog(raw)
		lt, err = verifyLogoutToken(ctx, relying.IDTokenVerifier(), raw)
		if err != nil {
			t.Fatalf("the logout token after the password change does not verify: %v", err)
		}
		if lt.SessionID != id2.SessionID || lt.Subject != ada.Sub() {
			t.Errorf("logout token after the password change: sid %q sub %q; want the second sign-in's sid %s and %s", lt.SessionID, lt.Subject, id2.SessionID, ada.Sub())
		}
		if code, _ := s.restJSON(t, http.MethodGet, "/api/v1/profile", rest, nil); code != http.StatusOK {
			t.Errorf("the REST session that changed the password: GET /api/v1/profile %d; want 200 (it goes on)", code)
		}
		_, err = rp.RefreshTokens[*oidc.IDTokenClaims](ctx, relying, tokens2.RefreshToken, "", "")
		if oidcError(err) != "invalid_grant" {
			t.Errorf("refresh with the relying party's refresh token after the password change: %v; want invalid_grant", err)
		}
		if _, err := rp.Userinfo[*oidc.UserInfo](ctx, tokens2.AccessToken, tokens2.TokenType, id2.Subject, relying); oidcError(err) != "invalid_token" {
			t.Errorf("UserInfo with the relying party's access token after the password change: %v; want invalid_token", err)
		}
		res, _ = signIn(newPassword)
		if len(res.Pages) == 0 || res.Pages[0] != "login" {
			t.Errorf("after the password change, the next authorization went through pages %q; want the login page first", res.Pages)
		}

		select {
		case d := <-logouts:
			t.Errorf("an unexpected back-channel delivery (err %v): each ended sign-in is announced once", d.err)
		default:
		}
	})
}

// tamper changes the last character of a JWT's signature, keeping it
// base64url.
func tamper(raw string) string {
	last := raw[len(raw)-1]
	repl := byte('A')
	if last == 'A' {
		repl = 'Q'
	}
	return raw[:len(raw)-1] + string(repl)
}
