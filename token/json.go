package token

import (
	"bytes"
	"encoding/json"
	"unicode"
)

// RepeatsKey reports whether an object anywhere in body (valid JSON)
// holds two keys that encoding/json could take for one field: equal under
// Unicode simple case folding, which is how it matches names. With
// duplicates, encoding/json keeps the last value while a proxy, a log or a
// validator may have read the first: {"password":"short","password":"long…"}
// must be refused, not resolved.
func RepeatsKey(body []byte) bool {
	type frame struct {
		keys    map[string]struct{} // nil for an array
		inValue bool                // the object's next token is a value
	}
	var stack []*frame
	dec := json.NewDecoder(bytes.NewReader(body))
	for {
		tok, err := dec.Token()
		if err != nil {
			return false // the end (Decode has checked the syntax)
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			stack = stack[:len(stack)-1]
			continue
		}
		if top != nil && top.keys != nil && !top.inValue {
			k := foldKey(tok.(string))
			if _, dup := top.keys[k]; dup {
				return true
			}
			top.keys[k] = struct{}{}
			top.inValue = true
			continue
		}
		if top != nil && top.keys != nil {
			top.inValue = false // this token starts the value; the next is a key
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{keys: map[string]struct{}{}})
		case json.Delim('['):
			stack = append(stack, &frame{})
		}
	}
}

// foldKey maps s to one representative of its class under Unicode simple
// case folding (the smallest rune of each rune's folding orbit), so that
// keys equal under strings.EqualFold map to the same string.
func foldKey(s string) string {
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
