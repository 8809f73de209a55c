package token

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DPoP proofs (RFC 9449 §4) come from clients, so unlike our own tokens they
// cannot be matched against a header we minted. ParseProof reads one as
// outside input: strict base64url in every segment, no repeated JSON key
// and no member name with an escape, a header of exactly typ, alg and jwk,
// a public key it rebuilds and re-encodes (so the key, and its thumbprint,
// has one spelling), and the signature checked by the same Key.verify as
// our tokens before any claim is believed. One form is accepted for both forms of an ES256 signature:
// client libraries make high-S signatures as often as low ones, and the
// twin of a seen proof carries the same jti, which the caller's replay
// check refuses.

// TypeDPoP is the typ of a DPoP proof.
const TypeDPoP = "dpop+jwt"

// Ed25519 is RFC 9864's name for EdDSA with Ed25519, which current DPoP
// client libraries send; it is accepted alongside EdDSA.
const Ed25519 = "Ed25519"

// ProofAlgs are the proof algorithms accepted (never none, never a MAC).
var ProofAlgs = []string{ES256, RS256, EdDSA, Ed25519}

// ProofWindow is how old a proof may be (its iat); one from the future is
// allowed Leeway.
const ProofWindow = 60 * time.Second

// ErrProof is wrapped by every error ParseProof returns.
var ErrProof = errors.New("invalid DPoP proof")

// ProofWant is what a proof must show (RFC 9449 §4.3).
type ProofWant struct {
	Method      string // htm
	URL         string // htu: the request's URL, its path escaped as sent (URL.EscapedPath); query and fragment are ignored
	AccessToken string // ath must hash it; "" at the token endpoint
	Now         time.Time
}

// Proof is a verified DPoP proof.
type Proof struct {
	JKT      string // RFC 7638 thumbprint of its key: what a token is bound to (cnf.jkt)
	ID       string // jti, for the caller's replay check
	IssuedAt int64
	Nonce    string // the server nonce it carries, if any, for the caller to check
}

func proofErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrProof, fmt.Sprintf(format, args...))
}

// ParseProof verifies raw as a DPoP proof for want and returns it.
func ParseProof(raw string, want ProofWant) (*Proof, error) {
	if len(raw) > MaxLen {
		return nil, proofErr("%d bytes, limit %d", len(raw), MaxLen)
	}
	head, rest, ok1 := strings.Cut(raw, ".")
	body, sig, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 {
		return nil, proofErr("not three segments")
	}
	var seg [3][]byte
	for i, s := range []string{head, body, sig} {
		b, err := strictB64(s)
		if err != nil || len(b) == 0 {
			return nil, proofErr("bad base64url")
		}
		seg[i] = b
	}
	h, hraw, err := members(seg[0], "typ", "alg")
	if err != nil {
		return nil, proofErr("header: %v", err)
	}
	if len(hraw) != 3 || hraw["jwk"] == nil {
		return nil, proofErr("header: want typ, alg and jwk only")
	}
	if h["typ"] != TypeDPoP {
		return nil, proofErr("typ is not %s", TypeDPoP)
	}
	key, err := proofKey(h["alg"], hraw["jwk"])
	if err != nil {
		return nil, proofErr("%v", err)
	}
	// A proof may carry either form of an ES256 signature (see above);
	// Key.verify takes the low one, made here in place.
	if key.Alg == ES256 && len(seg[2]) == 64 {
		lowS(new(big.Int).SetBytes(seg[2][32:])).FillBytes(seg[2][32:])
	}
	if len(seg[2]) != key.sigLen || !key.verify([]byte(raw[:len(head)+1+len(body)]), seg[2]) {
		return nil, proofErr("signature")
	}
	c, craw, err := members(seg[1], "jti", "htm", "htu")
	if err != nil {
		return nil, proofErr("claims: %v", err)
	}
	iat, err := strconv.ParseInt(string(craw["iat"]), 10, 64) // a JSON integer, not a string or a fraction
	switch {
	case err != nil:
		return nil, proofErr("iat is not an integer")
	case len(c["jti"]) > 256 || !vschar(c["jti"]):
		return nil, proofErr("jti must be 1 to 256 printable ASCII characters")
	case c["htm"] != want.Method:
		return nil, proofErr("htm is not %s", want.Method)
	case !sameHTU(c["htu"], want.URL):
		return nil, proofErr("htu is not this endpoint")
	case iat < want.Now.Add(-ProofWindow).Unix() || iat > want.Now.Add(Leeway).Unix():
		return nil, proofErr("iat outside the accepted window")
	case want.AccessToken != "" && c["ath"] != HashB64(want.AccessToken):
		return nil, proofErr("ath does not match the access token")
	}
	return &Proof{JKT: key.ID, ID: c["jti"], IssuedAt: iat, Nonce: c["nonce"]}, nil
}

// HashB64 is base64url(SHA-256(s)): a proof's ath (RFC 9449 §4.2).
func HashB64(s string) string {
	sum := sha256.Sum256([]byte(s))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// strictB64 decodes base64url without padding, refusing any other byte
// (decoders skip CR and LF) and non-zero trailing bits.
func strictB64(s string) ([]byte, error) {
	if !isB64URL(s) {
		return nil, errors.New("bad base64url")
	}
	return base64.RawURLEncoding.Strict().DecodeString(s)
}

// members decodes a JSON object, refusing a repeated key and a member name
// with an escape (no name of a header, claims or JWK needs one, and
// "\u0061lg" would be a second spelling of alg), and returns its string
// members; members of another type are left out, so a required one (which
// must be a non-empty string) is missing, and an optional one reads as "".
// Names are matched exactly, not case-insensitively as encoding/json
// matches fields. raw holds every member's JSON text.
func members(b []byte, required ...string) (str map[string]string, raw map[string]json.RawMessage, err error) {
	if json.Unmarshal(b, &raw) != nil || raw == nil {
		return nil, nil, errors.New("not a JSON object")
	}
	switch key, repeated, escaped := CheckKeys(b, nil); {
	case repeated:
		return nil, nil, errors.New("a repeated member")
	case escaped: // with no type, what CheckKeys calls unknown
		return nil, nil, fmt.Errorf("member name %.20q holds an escape", key)
	}
	str = make(map[string]string, len(raw))
	for k, v := range raw {
		var s string
		if json.Unmarshal(v, &s) == nil {
			str[k] = s
		}
	}
	for _, k := range required {
		if str[k] == "" {
			return nil, nil, fmt.Errorf("no %s", k)
		}
	}
	return str, raw, nil
}

// weakEd25519 reports whether x, an Ed25519 public key, is one under
// which a proof proves nothing: a point of small order, for which R = x and
// S = 0 is a signature that crypto/ed25519 verifies (of every message for
// the identity, of one in eight at most for the others: RFC 8032 does not
// refuse them), so anyone makes proofs for its thumbprint; or a y of p or
// more, a second spelling of another key (a second thumbprint for one key).
// A lookup, not arithmetic: it runs on every proof, beside a verification
// that costs as much as a check by point arithmetic did.
func weakEd25519(x []byte) bool {
	y := [32]byte(x)
	y[31] &= 0x7f // the sign of the x coordinate
	if y[31] == 0x7f && y[0] >= 0xed && !slices.ContainsFunc(y[1:31], func(b byte) bool { return b != 0xff }) {
		return true // y >= p = 2^255 - 19, little-endian ed ff … ff 7f
	}
	return slices.Contains(smallOrderY, y)
}

// smallOrderY are the y coordinates, little-endian, of Ed25519's eight
// points of small order (its torsion subgroup, of order 8, which holds no
// other): 1 (the identity), p-1 (order 2), 0 (the two of order 4), and ±c
// (the four of order 8; libsodium's list, which TestProofRefusesWeakEd25519Keys
// shows are such points by forging a proof under each).
var smallOrderY = func() (ys [][32]byte) {
	for _, h := range []string{
		"0100000000000000000000000000000000000000000000000000000000000000",
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"0000000000000000000000000000000000000000000000000000000000000000",
		"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
		"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
	} {
		b, _ := hex.DecodeString(h)
		ys = append(ys, [32]byte(b))
	}
	return ys
}()

// proofKey rebuilds the public key of a proof's jwk header for alg. Only
// the public members of an RSA (2048 to 4096 bits), P-256 or Ed25519 key
// are accepted; the key must be in the form JWK re-encodes (no leading
// zero, no other spelling), so its thumbprint names it once.
func proofKey(alg string, jwkText []byte) (*Key, error) {
	j, raw, err := members(jwkText, "kty")
	if err != nil {
		return nil, fmt.Errorf("jwk: %v", err)
	}
	for k := range raw {
		_, isString := j[k]
		switch k {
		case "kty", "crv", "x", "y", "n", "e", "kid", "alg", "use":
			if !isString {
				return nil, fmt.Errorf("jwk member %.20q is not a string", k)
			}
		case "key_ops", "ext": // WebCrypto's exportKey adds them (RFC 7517 §4.3): read by nothing here
		case "d", "p", "q", "dp", "dq", "qi", "oth", "k":
			return nil, errors.New("jwk holds a private key")
		default:
			return nil, fmt.Errorf("jwk member %.20q", k)
		}
	}
	want := map[string]string{ES256: "EC", RS256: "RSA", EdDSA: "OKP", Ed25519: "OKP"}[alg]
	if want == "" || j["kty"] != want || (j["alg"] != "" && j["alg"] != alg) {
		return nil, fmt.Errorf("alg %.20q does not fit the key", alg)
	}
	b := func(name string, size int) []byte {
		v, err := strictB64(j[name])
		if err != nil || (size > 0 && len(v) != size) || len(v) == 0 {
			return nil
		}
		return v
	}
	var pub any
	switch j["kty"] {
	case "EC":
		x, y := b("x", 32), b("y", 32)
		if j["crv"] != "P-256" || x == nil || y == nil {
			return nil, errors.New("jwk: not a P-256 key")
		}
		if pub, err = ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...)); err != nil {
			return nil, errors.New("jwk: not a point on P-256")
		}
	case "RSA":
		n, e := b("n", 0), b("e", 0)
		if n == nil || e == nil || len(n) > 512 || len(e) > 4 {
			return nil, errors.New("jwk: not an RSA key of at most 4096 bits")
		}
		pub = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
	case "OKP":
		x := b("x", ed25519.PublicKeySize)
		if j["crv"] != Ed25519 || x == nil {
			return nil, errors.New("jwk: not an Ed25519 key")
		}
		if weakEd25519(x) {
			return nil, errors.New("jwk: an Ed25519 key of small order or in a second spelling")
		}
		pub = ed25519.PublicKey(x)
	}
	k, err := NewPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("jwk: %v", err)
	}
	if r := k.JWK(); r.X != j["x"] || r.Y != j["y"] || r.N != j["n"] || r.E != j["e"] || r.Crv != j["crv"] {
		return nil, errors.New("jwk: not in canonical form")
	}
	if pk, ok := pub.(*rsa.PublicKey); ok && (pk.E < 3 || pk.E%2 == 0) {
		return nil, errors.New("jwk: bad RSA exponent")
	}
	// A modulus with a small factor (an even one included) is one anyone
	// factors, and so signs under: a key that proves nothing, as an Ed25519
	// key of small order. A gcd, microseconds.
	if pk, ok := pub.(*rsa.PublicKey); ok && new(big.Int).GCD(nil, nil, pk.N, smallPrimes).Cmp(big.NewInt(1)) != 0 {
		return nil, errors.New("jwk: an RSA modulus with a small factor")
	}
	return k, nil
}

// smallPrimes is the product of the primes below 1024.
var smallPrimes = func() *big.Int {
	p := big.NewInt(1)
	for i := int64(2); i < 1024; i++ {
		if big.NewInt(i).ProbablyPrime(0) {
			p.Mul(p, big.NewInt(i))
		}
	}
	return p
}()

// sameHTU compares a proof's htu with the request's URL as RFC 9449 §4.3
// asks: without query and fragment, after syntax- and scheme-based
// normalization (RFC 3986 §6.2.2, §6.2.3: case of scheme and host, the
// default port, an empty path, percent-encoding). Paths are compared as
// sent, escaped: decoded, /oauth2%2Ftoken would be /oauth2/token, and a
// request for /users/a%3Fb would lose b as a query. Dot segments are not
// removed: the mux redirects a request whose path has them, so an htu
// with them names no request it serves. A trailing dot makes another host.
func sameHTU(htu, want string) bool {
	a, ok1 := normalHTU(htu)
	b, ok2 := normalHTU(want)
	return ok1 && ok2 && a == b
}

func normalHTU(s string) (string, bool) {
	u, err := url.Parse(s)
	if err != nil || u.Opaque != "" || u.User != nil || u.Host == "" {
		return "", false
	}
	scheme, host, port := strings.ToLower(u.Scheme), strings.ToLower(u.Hostname()), u.Port()
	if scheme != "https" && scheme != "http" {
		return "", false
	}
	if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
		port = ""
	}
	if port != "" || strings.Contains(host, ":") {
		host = net.JoinHostPort(host, port)
		host = strings.TrimSuffix(host, ":")
	}
	path := normalPath(u.EscapedPath())
	if path == "" {
		path = "/"
	}
	return scheme + "://" + host + path, true
}

// Unreserved is RFC 3986's unreserved set (§2.3): what a path's
// percent-encoding may be normalized to, and what PKCE verifiers hold.
const Unreserved = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"

// normalPath normalizes the percent-encoding of an escaped path (RFC 3986
// §6.2.2.1, §6.2.2.2): an unreserved character's is decoded, any other's
// hex digits are upper case. A reserved character and its encoding differ.
func normalPath(p string) string {
	return pctEncoded.ReplaceAllStringFunc(p, func(e string) string {
		if c, _ := url.PathUnescape(e); strings.Contains(Unreserved, c) {
			return c
		}
		return strings.ToUpper(e)
	})
}

var pctEncoded = regexp.MustCompile(`%[0-9A-Fa-f]{2}`)

// vschar reports whether s is 1 or more of %x20-7E.
func vschar(s string) bool {
	return s != "" && !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r > 0x7e })
}
