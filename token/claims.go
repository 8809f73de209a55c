package token

import (
	"strconv"
	"unicode/utf8"
)

// appendClaims appends c as a JSON object: the members and order of
// json.Marshal(c), written without reflection because signing sits on the
// token endpoint's hot path. Strings are escaped as RFC 8259 §7 requires;
// invalid UTF-8 becomes U+FFFD byte by byte, as encoding/json does.
// FuzzClaimsJSON checks that encoding/json reads back exactly what
// json.Marshal would have written.
func appendClaims(b []byte, c *Claims) []byte {
	b = append(b, `{"iss":`...)
	b = appendJSONString(b, c.Issuer)
	b = append(b, `,"sub":`...)
	b = appendJSONString(b, c.Subject)
	b = append(b, `,"aud":`...)
	b = appendJSONString(b, c.Audience)
	b = append(b, `,"exp":`...)
	b = strconv.AppendInt(b, c.Expiry, 10)
	b = appendOptInt(b, `,"nbf":`, c.NotBefore)
	b = append(b, `,"iat":`...)
	b = strconv.AppendInt(b, c.IssuedAt, 10)
	b = appendOptString(b, `,"jti":`, c.ID)
	b = appendOptString(b, `,"client_id":`, c.ClientID)
	b = appendOptString(b, `,"scope":`, c.Scope)
	b = appendOptInt(b, `,"auth_time":`, c.AuthTime)
	b = appendOptString(b, `,"nonce":`, c.Nonce)
	b = appendOptString(b, `,"at_hash":`, c.AtHash)
	b = appendOptString(b, `,"sid":`, c.SessionID)
	b = appendOptString(b, `,"secret_tag":`, c.SecretTag)
	b = appendOptString(b, `,"email":`, c.Email)
	if c.EmailVerified != nil {
		b = strconv.AppendBool(append(b, `,"email_verified":`...), *c.EmailVerified)
	}
	if c.Cnf != nil {
		b = append(appendJSONString(append(b, `,"cnf":{"jkt":`...), c.Cnf.JKT), '}')
	}
	if c.Events != nil {
		b = append(b, `,"events":{"http://schemas.openid.net/event/backchannel-logout":{}}`...)
	}
	return append(b, '}')
}

func appendOptString(b []byte, key, v string) []byte {
	if v == "" {
		return b
	}
	return appendJSONString(append(b, key...), v)
}

func appendOptInt(b []byte, key string, v int64) []byte {
	if v == 0 {
		return b
	}
	return strconv.AppendInt(append(b, key...), v, 10)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			b = append(b, c)
			i++
			continue
		}
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
			i++
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			i++
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				b = append(b, `\ufffd`...)
			} else {
				b = append(b, s[i:i+size]...)
			}
			i += size
		}
	}
	return append(b, '"')
}
