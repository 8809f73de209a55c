package token

import (
	"bytes"
	"encoding/json"
	"testing"
	"unicode"
)

// repeatsKeyReference is RepeatsKey as it was first written, on
// encoding/json's tokenizer, with the general case fold: slow, and the
// oracle the scanner is held to.
func repeatsKeyReference(body []byte) bool {
	type frame struct {
		keys    map[string]struct{}
		inValue bool
	}
	fold := func(s string) string {
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
	var stack []*frame
	dec := json.NewDecoder(bytes.NewReader(body))
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
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
			k := fold(tok.(string))
			if _, dup := top.keys[k]; dup {
				return true
			}
			top.keys[k] = struct{}{}
			top.inValue = true
			continue
		}
		if top != nil && top.keys != nil {
			top.inValue = false
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{keys: map[string]struct{}{}})
		case json.Delim('['):
			stack = append(stack, &frame{})
		}
	}
}

// FuzzRepeatsKey: on any bytes the scanner returns; on every valid JSON text the scanner answers as the
// tokenizer does, escapes, nesting, strings holding brackets and quotes,
// and keys equal only under case folding (k, K and the Kelvin sign) included.
func FuzzRepeatsKey(f *testing.F) {
	for _, s := range []string{
		`{"a":1,"a":2}`, `{"a":{"b":1,"b":2}}`, `{"a":[{"b":1},{"c":1,"c":2}]}`, `[{"a":1},{"a":1}]`,
		`{"a":{"a":{"a":1}},"b":{"a":2}}`, `{"a":[],"b":{},"c":"{\"c\":1}"}`, `{"k":1,"K":2}`, `{"k":1,"\u212a":2}`,
		`{"s":1,"ſ":2}`, `{"a\"b":1,"a\"B":2}`, `{"x":"]}","y":"\\","x ":1}`, `{"\u0061":1,"a":2}`, `"a"`, `[]`, `{}`,
		`{"a":[1,"b",{"b":[{"b":1}]}],"b":null}`, ` { "a" : 1 , "A" : 2 } `,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		RepeatsKey(body) // any bytes: it returns, whatever it answers
		if !json.Valid(body) {
			return
		}
		if got, want := RepeatsKey(body), repeatsKeyReference(body); got != want {
			t.Fatalf("RepeatsKey(%q) = %v; the tokenizer says %v", body, got, want)
		}
	})
}

func BenchmarkRepeatsKey(b *testing.B) {
	body := []byte(`{"typ":"dpop+jwt","alg":"ES256","jwk":{"kty":"EC","crv":"P-256","x":"l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs","y":"9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA"}}`)
	b.ReportAllocs()
	for b.Loop() {
		if RepeatsKey(body) {
			b.Fatal("no key repeats")
		}
	}
}
