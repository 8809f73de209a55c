package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
)

// JWK is the public part of a key as published in a JSON Web Key Set
// (RFC 7517 §4, RFC 7518 §6, RFC 8037 §2).
type JWK struct {
	Kty string `json:"kty"`
	Use string `json:"use,omitempty"`
	Alg string `json:"alg,omitempty"`
	Kid string `json:"kid,omitempty"`
	Crv string `json:"crv,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
}

// JWK returns k's public key as a JWK; an HMAC key has none and yields the zero JWK.
func (k *Key) JWK() JWK {
	b64 := base64.RawURLEncoding.EncodeToString
	j := JWK{Use: "sig", Alg: k.Alg, Kid: k.ID}
	switch p := k.pub.(type) {
	case *rsa.PublicKey:
		j.Kty, j.N, j.E = "RSA", b64(p.N.Bytes()), b64(big.NewInt(int64(p.E)).Bytes())
	case *ecdsa.PublicKey:
		ecdh, err := p.ECDH()
		if err != nil {
			return JWK{}
		}
		raw := ecdh.Bytes() // 0x04 || X || Y, each 32 bytes on P-256
		j.Kty, j.Crv, j.X, j.Y = "EC", "P-256", b64(raw[1:33]), b64(raw[33:65])
	case ed25519.PublicKey:
		j.Kty, j.Crv, j.X = "OKP", "Ed25519", b64(p)
	default:
		return JWK{}
	}
	return j
}

// Thumbprint returns the RFC 7638 SHA-256 thumbprint of j in base64url: the
// hash of the required members only, in lexical order, without whitespace.
// The values, base64url and names that no JSON encoder escapes, come out
// as json.Marshal writes them.
func Thumbprint(j JWK) (string, error) {
	var members []string // name, value, name, value…
	switch j.Kty {
	case "RSA":
		members = []string{"e", j.E, "kty", j.Kty, "n", j.N}
	case "EC":
		members = []string{"crv", j.Crv, "kty", j.Kty, "x", j.X, "y", j.Y}
	case "OKP":
		members = []string{"crv", j.Crv, "kty", j.Kty, "x", j.X}
	default:
		return "", fmt.Errorf("thumbprint: unsupported kty %q", j.Kty)
	}
	var scratch [512]byte // the members of a 2048-bit RSA key fit
	b := append(scratch[:0], '{')
	for i := 0; i < len(members); i += 2 {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, members[i])
		b = append(b, ':')
		b = appendJSONString(b, members[i+1])
	}
	sum := sha256.Sum256(append(b, '}'))
	return base64.RawURLEncoding.EncodeToString(sum[:]), nil
}

// ParsePrivateKeyPEM reads one PEM block holding a PKCS#8 private key (RSA,
// EC P-256 or Ed25519), or a PKCS#1 RSA or SEC 1 EC private key, and returns a
// signing Key for it. Any other type, curve or a short RSA key is an error.
func ParsePrivateKeyPEM(data []byte) (*Key, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	if next, _ := pem.Decode(rest); next != nil {
		return nil, errors.New("more than one PEM block")
	}
	var (
		priv any
		err  error
	)
	switch block.Type {
	case "PRIVATE KEY":
		priv, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		priv, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		priv, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", block.Type, err)
	}
	// x509 returns an Ed25519 key as the value type ed25519.PrivateKey,
	// which is what the type switches expect.
	s, ok := priv.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported key type %T", priv)
	}
	return NewSigningKey(s)
}

// MarshalPrivateKeyPEM returns priv as a PKCS#8 "PRIVATE KEY" PEM block.
func MarshalPrivateKeyPEM(priv crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// HalfHash returns the OpenID Connect at_hash (Core §3.1.3.6) of accessToken
// for a token signed with alg: the left half of the hash that alg uses, in
// base64url. EdDSA (Ed25519) uses SHA-512, as OpenID Connect libraries do.
func HalfHash(alg, accessToken string) string {
	newHash := sha256.New
	if alg == EdDSA {
		newHash = sha512.New
	}
	h := newHash()
	h.Write([]byte(accessToken))
	sum := h.Sum(nil)
	return base64.RawURLEncoding.EncodeToString(sum[:len(sum)/2])
}
