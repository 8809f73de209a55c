package token

import (
	"encoding/json"
	"strings"
	"unicode"
	"unicode/utf8"
)

// RepeatsKey reports whether an object anywhere in body (valid JSON)
// holds two keys that encoding/json could take for one field: equal under
// Unicode simple case folding, which is how it matches names. With
// duplicates, encoding/json keeps the last value while a proxy, a log or a
// validator may have read the first: {"password":"short","password":"long…"}
// must be refused, not resolved.
//
// body must be valid JSON (the caller has decoded it): the scan only tracks
// where keys are, without checking syntax; on other bytes its answer means
// nothing, but it still returns. (encoding/json's tokenizer did
// the same at a dozen allocations per token; FuzzRepeatsKey holds the two
// to the same answers.)
func RepeatsKey(body []byte) bool {
	type frame struct {
		keys    map[string]struct{} // nil for an array
		wantKey bool                // the object's next string is a key
	}
	var stack []frame
	for i := 0; i < len(body); i++ {
		switch c := body[i]; c {
		case '{':
			stack = append(stack, frame{keys: map[string]struct{}{}, wantKey: true})
		case '[':
			stack = append(stack, frame{})
		case '}', ']':
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
		case ',':
			if len(stack) > 0 && stack[len(stack)-1].keys != nil {
				stack[len(stack)-1].wantKey = true
			}
		case '"':
			j, escaped := i+1, false
			for ; j < len(body) && body[j] != '"'; j++ {
				if body[j] == '\\' {
					escaped = true
					j++ // the escaped byte, a quote perhaps
				}
			}
			if j >= len(body) {
				return false // an unterminated string: not JSON
			}
			if top := len(stack) - 1; top >= 0 && stack[top].wantKey {
				k := string(body[i+1 : j])
				if escaped {
					json.Unmarshal(body[i:j+1], &k) // valid JSON: cannot fail
				}
				k = foldKey(k)
				if _, dup := stack[top].keys[k]; dup {
					return true
				}
				stack[top].keys[k] = struct{}{}
				stack[top].wantKey = false
			}
			i = j
		}
	}
	return false
}

// foldKey maps s to one representative of its class under Unicode simple
// case folding (the smallest rune of each rune's folding orbit), so that
// keys equal under strings.EqualFold map to the same string.
func foldKey(s string) string {
	if ascii(s) { // the orbit of an ASCII letter has its upper case as its least rune (k: K, k, U+212A)
		b := []byte(s)
		for i, c := range b {
			if 'a' <= c && c <= 'z' {
				b[i] = c - 'a' + 'A'
			}
		}
		return string(b)
	}
	b := make([]rune, 0, len(s))
	for _, r := range s {
		m := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			m = min(m, f)
		}
		b = append(b, m)
	}
	return string(b)
}

func ascii(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool { return r >= utf8.RuneSelf })
}
