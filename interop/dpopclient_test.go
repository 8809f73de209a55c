package interop

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"
)

// A DPoP client (RFC 9449) written for these tests on top of go-jose and
// net/http, as a client application would write one: go-jose generates
// nothing but signs every proof (jose.NewSigner with EmbedJWK and typ
// dpop+jwt); this file adds the claims, the DPoP and Authorization headers,
// and the retry with the server's nonce (RFC 9449 §8). It is not the
// server's code and shares none of it.

// dpopKey is a client's DPoP key pair and the go-jose signer of its proofs.
type dpopKey struct {
	alg    jose.SignatureAlgorithm
	priv   crypto.Signer
	signer jose.Signer
	public jose.JSONWebKey
	jkt    string // RFC 7638 thumbprint, computed by go-jose: what the server must bind to (cnf.jkt)
}

func newDPoPKey(t testing.TB, alg jose.SignatureAlgorithm) *dpopKey {
	t.Helper()
	var priv crypto.Signer
	var err error
	switch alg {
	case jose.ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.EdDSA:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	case jose.RS256:
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		t.Fatalf("no DPoP key for %s", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: priv}, &jose.SignerOptions{
		EmbedJWK:     true,
		ExtraHeaders: map[jose.HeaderKey]any{jose.HeaderType: "dpop+jwt"},
	})
	if err != nil {
		t.Fatalf("go-jose NewSigner(%s): %v", alg, err)
	}
	pub := jose.JSONWebKey{Key: priv.Public()}
	return &dpopKey{alg: alg, priv: priv, signer: signer, public: pub, jkt: thumbprint(t, pub)}
}

// dpopProofClaims are the claims of a DPoP proof (RFC 9449 §4.2).
type dpopProofClaims struct {
	JTI   string `json:"jti"`
	HTM   string `json:"htm"`
	HTU   string `json:"htu"`
	IAT   int64  `json:"iat"`
	ATH   string `json:"ath,omitempty"`
	Nonce string `json:"nonce,omitempty"`
}

// dpopClaimsFor are the claims of a fresh proof for a request: htu without
// query or fragment, ath the hash of the access token sent with it.
func dpopClaimsFor(method, target, accessToken, nonce string) dpopProofClaims {
	u, err := url.Parse(target)
	if err == nil {
		u.RawQuery, u.Fragment = "", ""
		target = u.String()
	}
	c := dpopProofClaims{JTI: randomHex(16), HTM: method, HTU: target, IAT: time.Now().Unix(), Nonce: nonce}
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		c.ATH = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	return c
}

// sign makes the proof with go-jose.
func (k *dpopKey) sign(t testing.TB, c dpopProofClaims) string {
	t.Helper()
	payload, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := k.signer.Sign(payload)
	if err != nil {
		t.Fatalf("go-jose sign the DPoP proof: %v", err)
	}
	raw, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// proof is a fresh proof for method and target.
func (k *dpopKey) proof(t testing.TB, method, target, accessToken, nonce string) string {
	return k.sign(t, dpopClaimsFor(method, target, accessToken, nonce))
}

// handMade builds a proof by hand, for the malformed ones go-jose refuses
// to make: header is the JOSE header as given, and the signature is the
// key's signature over the signing input under the key's own algorithm,
// whatever alg the header claims. With the header {typ, alg, jwk} go-jose
// would make, it is a valid proof (the tests show it): so each forgery
// differs from a good proof in one way only.
func (k *dpopKey) handMade(t testing.TB, header map[string]any, c dpopProofClaims) string {
	t.Helper()
	input := dpopB64JSON(t, header) + "." + dpopB64JSON(t, c)
	return input + "." + base64.RawURLEncoding.EncodeToString(k.rawSign(t, []byte(input)))
}

// rawSign is the JWS signature (RFC 7518 §3, RFC 8037 §3.1) of input.
func (k *dpopKey) rawSign(t testing.TB, input []byte) []byte {
	t.Helper()
	sum := sha256.Sum256(input)
	switch p := k.priv.(type) {
	case *ecdsa.PrivateKey:
		r, s, err := ecdsa.Sign(rand.Reader, p, sum[:])
		if err != nil {
			t.Fatal(err)
		}
		out := make([]byte, 64)
		r.FillBytes(out[:32])
		s.FillBytes(out[32:])
		return out
	case ed25519.PrivateKey:
		return ed25519.Sign(p, input)
	case *rsa.PrivateKey:
		sig, err := rsa.SignPKCS1v15(rand.Reader, p, crypto.SHA256, sum[:])
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
	t.Fatalf("rawSign: %T", k.priv)
	return nil
}

// header is the JOSE header go-jose makes for k's proofs, as a map to
// change: typ, alg and the public jwk.
func (k *dpopKey) header(t testing.TB) map[string]any {
	t.Helper()
	b, err := k.public.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return map[string]any{"typ": "dpop+jwt", "alg": string(k.alg), "jwk": json.RawMessage(b)}
}

func dpopB64JSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// dpopClient is an OAuth client holding a DPoP key: it authenticates as
// c (Basic for a confidential client, client_id in the body for a public
// one) and sends a fresh proof with every request (none when key is nil).
type dpopClient struct {
	t      testing.TB
	srv    []*server // whose logs must not hold what passes through
	c      client
	key    *dpopKey
	http   *http.Client
	base   string // where requests go: the instance's address
	iss    string // the server's ISSUER: what proofs name in htu
	nonce  string // the last DPoP-Nonce the server sent (RFC 9449 §8)
	Nonced int    // requests retried with the server's nonce after use_dpop_nonce
}

func newDPoPClient(t testing.TB, s *server, c client, key *dpopKey) *dpopClient {
	return &dpopClient{t: t, srv: []*server{s}, c: c, key: key, http: testClient(t), base: s.URL, iss: s.URL}
}

// with returns a client like d with another key (nil: no proofs).
func (d *dpopClient) with(key *dpopKey) *dpopClient {
	e := *d
	e.key, e.nonce, e.Nonced = key, "", 0
	return &e
}

// at returns a client like d that sends its requests to base, another
// instance behind the same ISSUER.
func (d *dpopClient) at(base string, s *server) *dpopClient {
	e := *d
	e.base, e.srv = base, append(append([]*server(nil), d.srv...), s)
	return &e
}

func (d *dpopClient) noLog(v ...string) {
	for _, s := range d.srv {
		s.noLog(v...)
	}
}

// dpopReply is an HTTP answer.
type dpopReply struct {
	Status int
	Header http.Header
	Body   []byte
	JSON   map[string]any
}

func (r dpopReply) str(name string) string { s, _ := r.JSON[name].(string); return s }

// send makes one request: a form POSTed (authenticated as the client) when
// form is not nil, access (if not "") under the DPoP scheme when a proof
// goes with it and Bearer otherwise, and proof (if not "") as DPoP.
func (d *dpopClient) send(method, path string, form url.Values, access, proof string) dpopReply {
	t := d.t
	t.Helper()
	var body io.Reader
	if form != nil {
		if d.c.Secret == "" {
			form.Set("client_id", d.c.ID)
		}
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, d.base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if d.c.Secret != "" {
			req.SetBasicAuth(url.QueryEscape(d.c.ID), url.QueryEscape(d.c.Secret))
		}
	}
	if proof != "" {
		req.Header.Set("DPoP", proof)
		d.noLog(proof)
	}
	if access != "" {
		scheme := "Bearer"
		if proof != "" {
			scheme = "DPoP"
		}
		req.Header.Set("Authorization", scheme+" "+access)
	}
	return d.roundTrip(req)
}

// roundTrip sends req and reads the answer, keeping the server's nonce.
func (d *dpopClient) roundTrip(req *http.Request) dpopReply {
	t := d.t
	t.Helper()
	resp, err := d.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(resp.Body, 1<<20)); err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	r := dpopReply{Status: resp.StatusCode, Header: resp.Header, Body: buf.Bytes()}
	json.Unmarshal(r.Body, &r.JSON)
	if n := resp.Header.Get("DPoP-Nonce"); n != "" {
		d.nonce = n
	}
	return r
}

// authz is a request to the authorization server (token, PAR) with a fresh
// proof carrying the server's last nonce; on use_dpop_nonce with a
// DPoP-Nonce header it retries once with that nonce, as RFC 9449 §8 says.
func (d *dpopClient) authz(path string, form url.Values) dpopReply {
	d.t.Helper()
	for try := 0; ; try++ {
		proof := ""
		if d.key != nil {
			proof = d.key.proof(d.t, http.MethodPost, d.iss+path, "", d.nonce)
		}
		r := d.send(http.MethodPost, path, dpopCloneForm(form), "", proof)
		if try == 0 && d.key != nil && r.Status == http.StatusBadRequest && r.str("error") == "use_dpop_nonce" && r.Header.Get("DPoP-Nonce") != "" {
			d.Nonced++
			continue
		}
		return r
	}
}

func dpopCloneForm(f url.Values) url.Values {
	out := url.Values{}
	for k, v := range f {
		out[k] = append([]string(nil), v...)
	}
	return out
}

// resource calls a protected resource with access and a fresh proof of the
// client's key (Bearer without a key).
func (d *dpopClient) resource(method, path, access string) dpopReply {
	d.t.Helper()
	proof := ""
	if d.key != nil {
		proof = d.key.proof(d.t, method, d.iss+path, access, "")
	}
	return d.send(method, path, nil, access, proof)
}

// dpopTokens is a token endpoint answer (RFC 6749 §5.1).
type dpopTokens struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
	IDToken      string `json:"id_token"`
	Scope        string `json:"scope"`
}

// token asks the token endpoint for form's grant and wants 200.
func (d *dpopClient) token(form url.Values) dpopTokens {
	d.t.Helper()
	r := d.authz("/oauth2/token", form)
	if r.Status != http.StatusOK {
		d.t.Fatalf("token request (%s): status %d; want 200; body %s", form.Get("grant_type"), r.Status, r.Body)
	}
	var tok dpopTokens
	if err := json.Unmarshal(r.Body, &tok); err != nil || tok.AccessToken == "" {
		d.t.Fatalf("token response %s: %v", r.Body, err)
	}
	d.noLog(tok.AccessToken, tok.RefreshToken, tok.IDToken)
	return tok
}

// dpopPushed is a code flow's state on the client's side.
type dpopPushed struct {
	RequestURI, Verifier, State, Nonce string
}

// push sends an authorization request to POST /oauth2/par (RFC 9126 §2.1)
// with a proof, which binds the code to the client's key (RFC 9449 §10.1),
// and checks the 201 answer.
func (d *dpopClient) push(redirectURI, scope string) dpopPushed {
	t := d.t
	t.Helper()
	p := dpopPushed{Verifier: oauth2.GenerateVerifier(), State: randomHex(16), Nonce: randomHex(16)}
	d.noLog(p.Verifier)
	r := d.authz("/oauth2/par", url.Values{
		"response_type": {"code"}, "redirect_uri": {redirectURI}, "scope": {scope}, "state": {p.State}, "nonce": {p.Nonce},
		"code_challenge": {oauth2.S256ChallengeFromVerifier(p.Verifier)}, "code_challenge_method": {"S256"},
	})
	if r.Status != http.StatusCreated {
		t.Fatalf("POST /oauth2/par: status %d; want 201; body %s", r.Status, r.Body)
	}
	if cc := r.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
		t.Errorf("PAR answer Cache-Control %q; want no-store (RFC 9126 §2.2)", cc)
	}
	p.RequestURI = r.str("request_uri")
	d.noLog(p.RequestURI)
	if !strings.HasPrefix(p.RequestURI, "urn:ietf:params:oauth:request_uri:") || r.JSON["expires_in"] != float64(60) {
		t.Fatalf("PAR answer %s; want a urn:ietf:params:oauth:request_uri: and expires_in 60", r.Body)
	}
	return p
}

// authorizeURL is the authorization request that carries only client_id
// and the request_uri (RFC 9126 §4).
func (d *dpopClient) authorizeURL(p dpopPushed) string {
	return d.iss + "/oauth2/authorize?" + url.Values{"client_id": {d.c.ID}, "request_uri": {p.RequestURI}}.Encode()
}

// signIn pushes the request, lets the person sign in and consent through
// ua, and returns the code from the redirect with the flow's state.
func (d *dpopClient) signIn(ua *userAgent, login, redirectURI, scope string) (string, dpopPushed) {
	t := d.t
	t.Helper()
	p := d.push(redirectURI, scope)
	res := ua.authorize(d.authorizeURL(p), login, password, "allow")
	code := res.Query.Get("code")
	if code == "" || res.Query.Get("state") != p.State || res.Query.Get("iss") != d.iss {
		t.Fatalf("redirect after a pushed request: %v; want a code, state %q and iss %q", res.Location, p.State, d.iss)
	}
	if got := res.Location.Scheme + "://" + res.Location.Host + res.Location.Path; got != redirectURI {
		t.Errorf("redirected to %s; want the pushed redirect_uri %s", got, redirectURI)
	}
	d.noLog(code)
	return code, p
}

// exchangeForm is the code's token request (RFC 6749 §4.1.3 with PKCE).
func dpopExchangeForm(code, redirectURI string, p dpopPushed) url.Values {
	return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirectURI}, "code_verifier": {p.Verifier}}
}

func dpopRefreshForm(rt string) url.Values {
	return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
}
