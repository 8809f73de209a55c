// Package token mints and verifies tokens: RFC 9068 JWT access tokens, OpenID
// Connect ID tokens, and the opaque random values used for refresh tokens,
// authorization codes and client secrets. It is pure: no I/O, no clock of its
// own (callers pass now), no package state.
//
// # Security
//
// A JWT is accepted only in the exact byte form Sign produces for one of the
// configured keys. Parse caps the length, splits on exactly two dots, rejects
// any byte outside the base64url alphabet, and then looks the header segment
// up, byte for byte, among the headers precomputed for the configured keys.
// That one lookup selects the key, its algorithm and the token type together,
// so "alg":"none", an unknown "kid", a "crit" member, an HS256 header naming an
// RSA key (algorithm confusion) or any re-ordering of the header fields never
// reach signature verification. The signature is checked (HMAC in constant
// time with hmac.Equal) before the payload is decoded. An ECDSA signature
// has two valid forms, (r, s) and (r, n−s); Sign makes only the low one and
// verification refuses the high one, so every accepted ES256 token, too, has
// one byte form. Every rejection wraps ErrInvalid; the reason is in the error
// text, for logs only.
package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"math/big"
	"strings"
	"sync"
	"time"
)

// ErrInvalid is wrapped by every error Parse returns.
var ErrInvalid = errors.New("invalid token")

// Algorithms (RFC 7518 §3.1, RFC 8037 §3.1).
const (
	HS256 = "HS256"
	RS256 = "RS256"
	ES256 = "ES256"
	EdDSA = "EdDSA"
)

// Token types, the JOSE "typ" header (RFC 9068 §2.1, OpenID Connect Core §2).
const (
	TypeAccess = "at+jwt"
	TypeID     = "JWT"
	TypeLogout = "logout+jwt" // OpenID Connect Back-Channel Logout 1.0 §2.4
)

// MaxLen bounds the length of a token Parse will look at. Our tokens are a few
// hundred bytes; anything near this is hostile.
const MaxLen = 4096

// Leeway is the clock skew tolerated on exp, nbf and iat.
const Leeway = 10 * time.Second

// Claims are the JWT claims this server mints and reads (RFC 7519 §4.1,
// RFC 9068 §2.2, OpenID Connect Core §2). Times are NumericDate seconds.
type Claims struct {
	Issuer    string `json:"iss"`
	Subject   string `json:"sub"`
	Audience  string `json:"aud"`
	Expiry    int64  `json:"exp"`
	NotBefore int64  `json:"nbf,omitempty"`
	IssuedAt  int64  `json:"iat"`
	ID        string `json:"jti,omitempty"`
	ClientID  string `json:"client_id,omitempty"`
	Scope     string `json:"scope,omitempty"`
	AuthTime  int64  `json:"auth_time,omitempty"`
	Nonce     string `json:"nonce,omitempty"`
	AtHash    string `json:"at_hash,omitempty"`
	SessionID string `json:"sid,omitempty"` // access tokens: the refresh-token family; ID and logout tokens: the browser sign-in
	// Access tokens of a confidential client: which of its secrets the
	// request showed, by a tag (store.SecretTag), so that a rotation can
	// revoke what the old one mints.
	SecretTag string `json:"secret_tag,omitempty"`
	// ID tokens granted the email scope (OIDC Core §5.1, §5.4): the address
	// and whether it is verified, written whenever set, false included.
	Email         string  `json:"email,omitempty"`
	EmailVerified *bool   `json:"email_verified,omitempty"`
	Events        *Events `json:"events,omitempty"` // logout tokens only
	Cnf           *Cnf    `json:"cnf,omitempty"`    // access tokens bound to a DPoP key
}

// Cnf is the confirmation claim of a DPoP-bound access token (RFC 9449
// §6.1): the RFC 7638 thumbprint of the key its proofs must be made with.
type Cnf struct {
	JKT string `json:"jkt"`
}

// Events is the events claim of a logout token (OpenID Connect Back-Channel
// Logout 1.0 §2.4): the back-channel logout event, an empty object.
type Events struct {
	BackchannelLogout struct{} `json:"http://schemas.openid.net/event/backchannel-logout"`
}

// Key is one key of a key set: an HMAC secret or an asymmetric key pair (or
// only its public half, for a retired key that still verifies).
type Key struct {
	ID   string // "kid"
	Alg  string // HS256, RS256, ES256 or EdDSA
	mac  []byte
	priv crypto.Signer // nil when the key only verifies
	pub  crypto.PublicKey
	pool *sync.Pool // of hash.Hash for HMAC keys
	// sigLen is the exact signature length for k's algorithm, set where
	// the algorithm is chosen.
	sigLen int
}

// NewHMACKey returns an HS256 key. Its kid is derived from the secret with
// HMAC, so it names the key without revealing anything about it.
func NewHMACKey(secret []byte) *Key {
	kid := "hs-" + base64.RawURLEncoding.EncodeToString(MAC(secret, "oauth2-api kid")[:9])
	s := append([]byte(nil), secret...)
	return &Key{ID: kid, Alg: HS256, mac: s, sigLen: sha256.Size,
		pool: &sync.Pool{New: func() any { return hmac.New(sha256.New, s) }}}
}

// NewSigningKey returns a key for priv, which must be an *rsa.PrivateKey
// (RS256, at least 2048 bits), an *ecdsa.PrivateKey on P-256 (ES256) or an
// ed25519.PrivateKey (EdDSA). The kid is the key's RFC 7638 thumbprint.
func NewSigningKey(priv crypto.Signer) (*Key, error) {
	// Our own RSA keys use e = 65537, as every generator does: e = 3 is
	// what Bleichenbacher's PKCS#1 v1.5 forgery targets at lax verifiers
	// (RFC 8017 leaves e free; NIST SP 800-56B, SP 800-131A want e > 2^16).
	if p, ok := priv.Public().(*rsa.PublicKey); ok && p.E != 65537 {
		return nil, fmt.Errorf("RSA key has public exponent %d, want 65537", p.E)
	}
	k, err := NewPublicKey(priv.Public())
	if err != nil {
		return nil, err
	}
	k.priv = priv
	return k, nil
}

// NewPublicKey returns a verify-only key for pub (see NewSigningKey).
func NewPublicKey(pub crypto.PublicKey) (*Key, error) {
	k := &Key{pub: pub}
	switch p := pub.(type) {
	case *rsa.PublicKey:
		if p.N.BitLen() < 2048 {
			return nil, fmt.Errorf("RSA key has %d bits, need at least 2048", p.N.BitLen())
		}
		k.Alg, k.sigLen = RS256, p.Size()
	case *ecdsa.PublicKey:
		if p.Curve.Params().Name != "P-256" {
			return nil, fmt.Errorf("EC key on %s, only P-256 is supported", p.Curve.Params().Name)
		}
		k.Alg, k.sigLen = ES256, 64 // RFC 7518 §3.4: R and S, 32 bytes each
	case ed25519.PublicKey:
		k.Alg, k.sigLen = EdDSA, ed25519.SignatureSize
	default:
		return nil, fmt.Errorf("unsupported key type %T", pub)
	}
	tp, err := Thumbprint(k.JWK())
	if err != nil {
		return nil, err
	}
	k.ID = tp
	return k, nil
}

// CanSign reports whether k holds a private or secret key.
func (k *Key) CanSign() bool { return k.mac != nil || k.priv != nil }

// Public reports whether k is an asymmetric key that may be published.
func (k *Key) Public() bool { return k.mac == nil }

// header returns the one header form minted for k and typ: the members in
// lexical order (as encoding/json writes a map, so JOSE libraries that marshal
// a map produce the same bytes), no whitespace.
func (k *Key) header(typ string) string {
	b, _ := json.Marshal(map[string]string{"alg": k.Alg, "kid": k.ID, "typ": typ})
	return base64.RawURLEncoding.EncodeToString(b)
}

func (k *Key) sign(input []byte) ([]byte, error) {
	switch k.Alg {
	case HS256:
		return k.mac256(nil, input), nil
	case RS256:
		d := sha256.Sum256(input)
		return rsa.SignPKCS1v15(rand.Reader, k.priv.(*rsa.PrivateKey), crypto.SHA256, d[:])
	case ES256:
		d := sha256.Sum256(input)
		r, s, err := ecdsa.Sign(rand.Reader, k.priv.(*ecdsa.PrivateKey), d[:])
		if err != nil {
			return nil, err
		}
		// RFC 7518 §3.4: R and S as 32-byte big-endian integers, concatenated;
		// S in the low form only (see the package doc).
		out := make([]byte, 64)
		r.FillBytes(out[:32])
		lowS(s).FillBytes(out[32:])
		return out, nil
	case EdDSA:
		return ed25519.Sign(k.priv.(ed25519.PrivateKey), input), nil
	}
	return nil, fmt.Errorf("sign: unsupported algorithm %q", k.Alg)
}

func (k *Key) verify(input, sig []byte) bool {
	switch k.Alg {
	case HS256:
		var buf [sha256.Size]byte
		return hmac.Equal(k.mac256(buf[:0], input), sig) // constant time: the MAC is a secret-derived value
	case RS256:
		d := sha256.Sum256(input)
		return rsa.VerifyPKCS1v15(k.pub.(*rsa.PublicKey), crypto.SHA256, d[:], sig) == nil
	case ES256:
		if len(sig) != 64 {
			return false
		}
		d := sha256.Sum256(input)
		r := new(big.Int).SetBytes(sig[:32])
		s := new(big.Int).SetBytes(sig[32:])
		return s.Cmp(p256HalfOrder) <= 0 && ecdsa.Verify(k.pub.(*ecdsa.PublicKey), d[:], r, s)
	case EdDSA:
		return len(sig) == ed25519.SignatureSize && ed25519.Verify(k.pub.(ed25519.PublicKey), input, sig)
	}
	return false
}

// mac256 appends the HMAC-SHA256 of input under k's secret to dst, with a
// hash from k's pool.
func (k *Key) mac256(dst, input []byte) []byte {
	m := k.pool.Get().(hash.Hash)
	m.Reset()
	m.Write(input)
	dst = m.Sum(dst)
	k.pool.Put(m)
	return dst
}

// p256HalfOrder is n/2 for P-256: an ES256 signature's s above it is the
// high form of a signature whose low form is n−s.
var p256HalfOrder = new(big.Int).Rsh(elliptic.P256().Params().N, 1)

// lowS turns s, an ES256 signature's S, into its low form, n−s if s is
// above n/2, and returns it. Sign and ParseProof both use it. An s at or
// above n is no form of a signature: it is left as it is, high, for verify
// to refuse (n−s would be negative, and FillBytes would write s−n: S+n
// would pass for S).
func lowS(s *big.Int) *big.Int {
	if s.Cmp(p256HalfOrder) > 0 && s.Cmp(elliptic.P256().Params().N) < 0 {
		s.Sub(elliptic.P256().Params().N, s)
	}
	return s
}

// Signer signs JWTs with one key.
type Signer struct {
	key     *Key
	headers map[string]string // typ → encoded header
}

// NewSigner returns a Signer for k, which must be able to sign.
func NewSigner(k *Key) (*Signer, error) {
	if !k.CanSign() {
		return nil, fmt.Errorf("key %s cannot sign", k.ID)
	}
	return &Signer{key: k, headers: map[string]string{
		TypeAccess: k.header(TypeAccess),
		TypeID:     k.header(TypeID),
		TypeLogout: k.header(TypeLogout),
	}}, nil
}

// Key returns the signing key.
func (s *Signer) Key() *Key { return s.key }

// Sign returns the compact JWS serialisation (RFC 7515 §7.1) of c with the
// JOSE header for typ (TypeAccess or TypeID).
func (s *Signer) Sign(typ string, c *Claims) (string, error) {
	h, ok := s.headers[typ]
	if !ok {
		return "", fmt.Errorf("sign: unknown token type %q", typ)
	}
	var scratch [512]byte
	payload := appendClaims(scratch[:0], c)
	enc := base64.RawURLEncoding
	buf := make([]byte, 0, len(h)+1+enc.EncodedLen(len(payload))+1+enc.EncodedLen(s.key.sigLen))
	buf = append(buf, h...)
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, payload)
	sig, err := s.key.sign(buf)
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, sig)
	return string(buf), nil
}

// Verifier checks JWTs against a fixed set of keys.
type Verifier struct {
	byHeader map[string]entry // encoded header → key and typ
}

type entry struct {
	key *Key
	typ string
}

// NewVerifier returns a Verifier that accepts tokens signed by any of keys.
// Key IDs must be unique.
func NewVerifier(keys ...*Key) (*Verifier, error) {
	v := &Verifier{byHeader: make(map[string]entry)}
	seen := make(map[string]bool)
	for _, k := range keys {
		if seen[k.ID] {
			return nil, fmt.Errorf("duplicate key id %q", k.ID)
		}
		seen[k.ID] = true
		for _, typ := range []string{TypeAccess, TypeID, TypeLogout} {
			v.byHeader[k.header(typ)] = entry{key: k, typ: typ}
		}
	}
	return v, nil
}

// Expect says what Parse requires of the claims.
type Expect struct {
	Type     string // TypeAccess or TypeID
	Issuer   string
	Audience string
	// AllowExpired skips the exp check, for an id_token_hint at logout
	// (OpenID Connect RP-Initiated Logout §2: an expired hint is fine).
	AllowExpired bool
	// AnyAudience skips the aud check, for the same hint, whose audience
	// (the client) is what the caller wants to learn.
	AnyAudience bool
}

// Parse verifies raw and returns its claims. It returns nil and an error
// wrapping ErrInvalid if raw is not, byte for byte, a token this Verifier's
// keys signed for want.Type, or if it is expired (exp ≤ now − Leeway), not yet
// valid (nbf > now + Leeway), issued in the future, or names another issuer or
// audience.
func (v *Verifier) Parse(raw string, want Expect, now time.Time) (*Claims, error) {
	if len(raw) > MaxLen {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrInvalid, len(raw), MaxLen)
	}
	head, rest, ok1 := strings.Cut(raw, ".")
	body, sig, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("%w: not three segments", ErrInvalid)
	}
	// Reject anything outside the base64url alphabet before decoding:
	// decoders skip '\r' and '\n', and a token must have one spelling.
	if !isB64URL(head) || !isB64URL(body) || !isB64URL(sig) || body == "" {
		return nil, fmt.Errorf("%w: bad base64url", ErrInvalid)
	}
	e, ok := v.byHeader[head]
	if !ok || e.typ != want.Type {
		return nil, fmt.Errorf("%w: unknown header", ErrInvalid)
	}
	enc := base64.RawURLEncoding.Strict()
	if enc.DecodedLen(len(sig)) != e.key.sigLen {
		return nil, fmt.Errorf("%w: signature length", ErrInvalid)
	}
	// Sized by the decoder, not a fixed buffer: an RSA key may have more than 4096 bits.
	sigBytes, err := enc.DecodeString(sig)
	if err != nil || len(sigBytes) != e.key.sigLen {
		return nil, fmt.Errorf("%w: signature encoding", ErrInvalid)
	}
	if !e.key.verify([]byte(raw[:len(head)+1+len(body)]), sigBytes) {
		return nil, fmt.Errorf("%w: signature", ErrInvalid)
	}
	payload, err := enc.DecodeString(body)
	if err != nil {
		return nil, fmt.Errorf("%w: payload encoding", ErrInvalid)
	}
	var c Claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrInvalid, err)
	}
	if err := c.valid(want, now); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *Claims) valid(want Expect, now time.Time) error {
	lee := int64(Leeway / time.Second)
	t := now.Unix()
	switch {
	case c.Expiry == 0:
		return fmt.Errorf("%w: no exp", ErrInvalid)
	case t >= c.Expiry+lee && !want.AllowExpired: // RFC 7519 §4.1.4: now must be before exp
		return fmt.Errorf("%w: expired", ErrInvalid)
	case c.NotBefore != 0 && t+lee < c.NotBefore:
		return fmt.Errorf("%w: not yet valid", ErrInvalid)
	case c.IssuedAt > t+lee:
		return fmt.Errorf("%w: issued in the future", ErrInvalid)
	case c.Issuer != want.Issuer:
		return fmt.Errorf("%w: issuer %q", ErrInvalid, c.Issuer)
	case c.Audience != want.Audience && !want.AnyAudience:
		return fmt.Errorf("%w: audience %q", ErrInvalid, c.Audience)
	case c.Subject == "":
		return fmt.Errorf("%w: no sub", ErrInvalid)
	}
	return nil
}

func isB64URL(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
