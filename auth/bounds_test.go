package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"oauth2-api/httpx"
	"oauth2-api/store"
	"oauth2-api/store/storetest"
)

// longURIs returns redirect URIs of total bytes in all (total - 22 must
// not leave a last piece shorter than its prefix): https://app.example/cb,
// then URIs as long as one may be (2000 bytes).
func longURIs(total int) []string {
	list := []string{"https://app.example/cb"}
	for left := total - len(list[0]); left > 0; left -= 2000 {
		u := fmt.Sprintf("https://preview-%d.app.example/cb/", len(list))
		list = append(list, u+strings.Repeat("p", min(left, 2000)-len(u)))
	}
	return list
}

// Every write of caller text takes the longest value its rule allows,
// stores it and reads it back byte for byte; one byte or character more is
// a 4xx that stores nothing, never a 5xx, on every dialect. MySQL's TEXT
// holds 64 KiB: an administrator's client with 64 KiB of redirect URIs
// was a 500 there (Data too long for column 'redirect_uris'), and one
// with 72 KB of scopes too ('scopes'); with less, a grant naming no scope
// took them all (a 16 KB access token for 12 KB of scopes) and its consent,
// longer than a scope parameter, was asked for again at every sign-in.
func TestLongestInputStoredOrRefused(t *testing.T) {
	const wide = "𝔘" // 4 bytes: the longest a character is in UTF-8
	names := strings.Repeat(wide, 100)
	email := strings.Repeat("a", 64) + "@" + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 61)
	scopes := make([]string, 25) // 25 tokens of 40 bytes and 24 spaces: maxScopeLen
	for i := range scopes {
		scopes[i] = fmt.Sprintf("scope-%02d-%s", i, strings.Repeat("x", 31))
	}
	scope := strings.Join(scopes, " ")
	if len(email) != 254 || len(scope) != maxScopeLen || len(strings.Join(longURIs(maxClientURIBytes), "")) != maxClientURIBytes {
		t.Fatal("the longest values are not as long as their bounds")
	}
	eachEnv(t, func(t *testing.T, e *env) {
		_, admin := e.admin()

		// Users: registration (each field one longer first: the longest
		// user, registered last, shares every one's email or username, so a
		// refused one stored would make it a 409), the profile, a password
		// change.
		user := map[string]string{"email": email, "username": strings.Repeat("u", 32), "password": strings.Repeat(wide, maxPassword), "first_name": names, "last_name": names}
		for field, longer := range map[string]string{"email": "a" + email, "username": "u" + user["username"],
			"password": user["password"] + "p", "first_name": names + "x", "last_name": names + "x"} {
			over := maps.Clone(user)
			over[field] = longer
			wantAPIError(e.register(over), http.StatusUnprocessableEntity, "validation_failed")
		}
		r := e.register(user).want(http.StatusCreated)
		access, _ := e.login(user["username"], user["password"])
		for _, m := range []map[string]any{r.JSON(), e.request("GET", "/api/v1/profile", nil, bearer(access)...).want(http.StatusOK).JSON()} {
			if m["email"] != email || m["username"] != user["username"] || m["first_name"] != names || m["last_name"] != names {
				t.Fatalf("the longest user reads back as %v", m)
			}
		}
		for _, f := range []string{"first_name", "last_name"} {
			wantAPIError(e.request("PATCH", "/api/v1/profile", map[string]string{f: strings.Repeat("名", 101)}, bearer(access)...), http.StatusUnprocessableEntity, "validation_failed")
		}
		e.request("PATCH", "/api/v1/profile", map[string]string{"first_name": strings.Repeat("名", 100)}, bearer(access)...).want(http.StatusOK)
		if m := e.request("GET", "/api/v1/profile", nil, bearer(access)...).JSON(); m["first_name"] != strings.Repeat("名", 100) || m["last_name"] != names {
			t.Fatalf("profile after the patches: %v", m)
		}
		password := e.secret(strings.Repeat("🔑", maxPassword))
		change := func(pw string) response {
			return e.request("POST", "/api/v1/profile/password", map[string]string{"current_password": user["password"], "new_password": pw}, bearer(access)...)
		}
		wantAPIError(change(e.secret(password+"p")), http.StatusUnprocessableEntity, "validation_failed")
		change(password).want(http.StatusNoContent)
		e.login(email, password)

		// Clients: the admin API (the CLI's CreateClient), the longest
		// accepted, then each field one byte longer (64 KiB of URIs first,
		// the 500 on MySQL).
		spec := ClientSpec{Name: names, RedirectURIs: longURIs(maxClientURIBytes), PostLogoutRedirectURIs: longURIs(maxClientURIBytes),
			Scopes: scopes, BackchannelLogoutURI: "https://rp.example/" + strings.Repeat("b", 2000-len("https://rp.example/"))}
		over := []ClientSpec{spec, spec, spec, spec, spec, spec}
		over[0].RedirectURIs = longURIs(64 << 10)
		over[1].RedirectURIs = longURIs(maxClientURIBytes + 1)
		over[2].PostLogoutRedirectURIs = longURIs(maxClientURIBytes + 1)
		over[3].Scopes = append(scopes[:24:24], scopes[24]+"x")
		over[4].Name += "x"
		over[5].BackchannelLogoutURI += "b"
		for i, s := range over {
			if r := e.request("POST", "/api/v1/clients", s, bearer(admin)...); r.Code != http.StatusUnprocessableEntity || r.Str("error") != "validation_failed" {
				t.Fatalf("client over[%d]: %d %.100s; want 422 validation_failed", i, r.Code, r.Body.String())
			}
		}
		r = e.request("POST", "/api/v1/clients", spec, bearer(admin)...).want(http.StatusCreated)
		id, secret := r.Str("client_id"), e.secret(r.Str("client_secret"))
		var list struct{ Clients []ClientJSON }
		json.Unmarshal(e.request("GET", "/api/v1/clients", nil, bearer(admin)...).want(http.StatusOK).Body.Bytes(), &list)
		spec.GrantTypes = []string{grantAuthorizationCode, grantRefreshToken}
		if len(list.Clients) != 1 || !reflect.DeepEqual(list.Clients[0].ClientSpec, spec) {
			t.Fatalf("clients after the refusals: %d, the first unlike the one sent", len(list.Clients))
		}
		if !slices.ContainsFunc(e.auditTrail(), func(ev store.Event) bool {
			return ev.Action == actClientCreated && ev.Subject == id && ev.Detail["name"] == names
		}) {
			t.Fatal("no client.created event names the client as sent")
		}

		// OAuth: a grant naming no scope is for every registered scope
		// (maxScopeLen), stored with the code, the consent and the tokens;
		// then the longest state and nonce through a pushed request, and
		// the device grant.
		b := e.browser()
		p := newPKCE()
		nonce := strings.Repeat("n", 512)
		code := e.secret(b.signIn(authorizeURL(id, p, "nonce", nonce), email, password))
		tok := e.token(id, secret, codeForm(code, p)).want(http.StatusOK)
		if tok.Str("scope") != scope {
			t.Fatalf("the code's tokens have the scope %q; want every registered scope", tok.Str("scope"))
		}
		if e.refreshGrant(id, secret, e.secret(tok.Str("refresh_token"))).want(http.StatusOK).Str("scope") != scope {
			t.Fatal("the refreshed tokens lost scopes")
		}
		state := strings.Repeat("s", 2048)
		for _, kv := range [][2]string{{"state", state + "s"}, {"nonce", nonce + "n"}} {
			e.formPost("/oauth2/par", id, secret, pushForm(p, kv[0], kv[1])).wantOAuthError(http.StatusBadRequest, "invalid_request")
		}
		e.formPost("/oauth2/par", id, secret, pushForm(p, "scope", scope+"x")).wantOAuthError(http.StatusBadRequest, "invalid_scope")
		pushed := e.formPost("/oauth2/par", id, secret, pushForm(p, "state", state, "nonce", nonce, "max_age", "9999999999")).want(http.StatusCreated)
		w := b.do("GET", "/oauth2/authorize?"+url.Values{"client_id": {id}, "request_uri": {pushed.Str("request_uri")}}.Encode(), nil)
		if q := callback(t, w, http.StatusFound); q.Get("state") != state { // consent remembered: straight back
			t.Fatalf("the pushed request's state came back %d bytes long", len(q.Get("state")))
		}
		dev, devSecret := e.deviceClient("TV", true, false, scopes...)
		e.clientPost("/oauth2/device_authorization", dev, devSecret, url.Values{"scope": {scope + "x"}}).wantOAuthError(http.StatusBadRequest, "invalid_scope")
		d := e.startDevice(dev, devSecret, scope)
		b.approve(d.userCode, email, password, "allow")
		if got := e.poll(dev, devSecret, d.deviceCode).want(http.StatusOK).Str("scope"); got != scope {
			t.Fatalf("the device grant's scope %q; want %q", got, scope)
		}

		// Dynamic registration: within its 16 KiB body, its caps.
		uris := make([]string, maxRegisteredURIs)
		for i := range uris {
			uris[i] = fmt.Sprintf("https://app.example/cb/%d/%s", i, strings.Repeat("r", 1400))
		}
		reg := e.registerClient("", map[string]any{"client_name": names, "redirect_uris": uris, "scope": scope}).want(http.StatusCreated)
		var read registration
		json.Unmarshal(e.manage("GET", reg.Str("client_id"), reg.Str("registration_access_token"), nil).want(http.StatusOK).Body.Bytes(), &read)
		if read.ClientName != names || read.Scope != scope || !reflect.DeepEqual(read.RedirectURIs, uris) {
			t.Fatalf("the registered client reads back as %+v", read.metadata)
		}
	}, withDynamicRegistration(RegistrationOpen))
}

// The client cache is bounded by bytes as well as by entries: a client may
// hold 64 KiB of URIs, so 10,000 entries could hold 640 MiB. Filled with
// the largest clients, its entries hold at most its byte bound (as the
// test counts them: the URIs alone), and just as much as it accounts for;
// and an entry keeps nothing of the request that fetched it (its key was a
// substring of the request body, up to httpx.MaxBody).
func TestClientCacheBounded(t *testing.T) {
	ctx, now := context.Background(), time.Now()
	db := storetest.Open(t, "sqlite")
	const maxBytes = 1 << 20
	cs := NewClients(db, time.Minute, 10_000, maxBytes)
	spec := ClientSpec{Name: "big", RedirectURIs: longURIs(maxClientURIBytes), PostLogoutRedirectURIs: longURIs(maxClientURIBytes)}
	keyedByID := true
	for i := range 40 {
		c, _, err := CreateClient(ctx, db, 0, spec, false, nil, now)
		if err != nil {
			t.Fatal(err)
		}
		body := "client_id=" + c.ID + "&pad=" + strings.Repeat("p", 64<<10)
		form, _ := url.ParseQuery(body)
		for _, at := range []time.Time{now, now.Add(time.Minute)} { // the second replaces an expired entry
			if _, err := cs.Get(ctx, form.Get("client_id"), at); err != nil {
				t.Fatal(err)
			}
		}
		held, accounted := 0, 0
		for k, e := range cs.entries {
			held += len(strings.Join(e.c.RedirectURIs, "")) + len(strings.Join(e.c.PostLogoutRedirectURIs, ""))
			accounted += cachedSize(e.c)
			keyedByID = keyedByID && unsafe.StringData(k) == unsafe.StringData(e.c.ID)
		}
		if held > maxBytes {
			t.Fatalf("after %d clients of 64 KiB of URIs, the cache holds %d entries, %d bytes of URIs; want at most %d bytes", i+1, len(cs.entries), held, maxBytes)
		}
		if accounted != cs.bytes || cs.bytes > maxBytes {
			t.Fatalf("after %d clients, the cache accounts for %d bytes, its entries' sizes are %d; want equal, at most %d", i+1, cs.bytes, accounted, maxBytes)
		}
		if _, ok := cs.entries[c.ID]; !ok {
			t.Fatalf("client %d, just fetched, is not cached", i+1)
		}
	}
	if !keyedByID {
		t.Fatal("an entry's key is not its client's id but the request's: it keeps the request body alive")
	}
	for id := range cs.entries {
		cs.Forget(id)
	}
	if cs.bytes != 0 {
		t.Fatalf("the emptied cache accounts for %d bytes; want 0", cs.bytes)
	}
}

// Each URI list's errors name the list's field: one over 32 KiB of
// post-logout URIs was refused as "redirect URIs".
func TestClientURIListErrorsNameTheirField(t *testing.T) {
	bad := []string{"https://app.example/cb#fragment"}
	for _, tc := range []struct {
		field string
		spec  ClientSpec
	}{
		{"redirect_uris", ClientSpec{RedirectURIs: longURIs(maxClientURIBytes + 1)}},
		{"redirect_uris", ClientSpec{RedirectURIs: bad}},
		{"post_logout_redirect_uris", ClientSpec{PostLogoutRedirectURIs: longURIs(maxClientURIBytes + 1)}},
		{"post_logout_redirect_uris", ClientSpec{PostLogoutRedirectURIs: bad}},
	} {
		tc.spec.Name, tc.spec.GrantTypes = "x", []string{grantClientCredentials}
		_, _, err := newClient(tc.spec, false, nil)
		if e, ok := errors.AsType[*httpx.Error](err); !ok || !strings.HasPrefix(e.Message, tc.field+": ") {
			t.Errorf("newClient(%d redirect, %d post-logout URIs) = %v; want a validation error naming %s", len(tc.spec.RedirectURIs), len(tc.spec.PostLogoutRedirectURIs), err, tc.field)
		}
	}
}
