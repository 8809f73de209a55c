package token

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// keysReference is the check as it was first written, on encoding/json's
// tokenizer: slow, and the oracle the scanner is held to. It returns the
// first repeated key (unescaped), or the first name of the body's own
// object that holds an escape (as sent: the bytes the tokenizer read for
// it, from InputOffset to InputOffset).
func keysReference(body []byte) (key string, repeated, escaped bool) {
	type frame struct {
		keys    map[string]struct{}
		inValue bool
	}
	var stack []*frame
	dec := json.NewDecoder(bytes.NewReader(body))
	for {
		from := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			return "", false, false
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
			k := tok.(string)
			if _, dup := top.keys[k]; dup {
				return k, true, false
			}
			if raw := bytes.TrimLeft(body[from:dec.InputOffset()], " \t\r\n,"); len(stack) == 1 && bytes.IndexByte(raw, '\\') >= 0 {
				return string(raw[1 : len(raw)-1]), false, true
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

// FuzzCheckKeys: on any bytes the scanner returns; on every valid JSON
// text, read with no type, it finds the fault the tokenizer finds: a
// repeated key (escapes, nesting, and strings holding brackets and quotes
// included), or a name of the body's own object holding an escape, first
// come first. Keys equal only under case folding (k, K and the Kelvin
// sign) are not repeats: nothing reads them as one name any more (a
// struct's fields are matched exactly).
func FuzzCheckKeys(f *testing.F) {
	for _, s := range []string{
		`{"a":1,"a":2}`, `{"a":{"b":1,"b":2}}`, `{"a":[{"b":1},{"c":1,"c":2}]}`, `[{"a":1},{"a":1}]`,
		`{"a":{"a":{"a":1}},"b":{"a":2}}`, `{"a":[],"b":{},"c":"{\"c\":1}"}`, `{"k":1,"K":2}`, `{"k":1,"\u212a":2}`,
		`{"s":1,"ſ":2}`, `{"a\"b":1,"a\"B":2}`, `{"x":"]}","y":"\\","x ":1}`, `{"\u0061":1,"a":2}`, `"a"`, `[]`, `{}`,
		`{"a":[1,"b",{"b":[{"b":1}]}],"b":null}`, ` { "a" : 1 , "a" : 2 } `,
		`{"a":1,"a":2,"\u0062":3}`, `{"a":{"\u0062":1},"\u0063":2}`, `[{"\u0061":1,"a":2}]`, // escaped names: outside, inside, after a repeat
		`{"a":"\u0062","b":"\"\\"}`,                     // escapes in values only
		`[{"k":1,"\u212a":2}]`, `[{"a\"b":1,"a\"B":2}]`, // the folding seeds above, where escaped names are data
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		CheckKeys(body, reflect.TypeFor[checkKeysTarget]()) // any bytes: it returns, whatever it answers
		if !json.Valid(body) {
			return
		}
		key, repeated, escaped := keysReference(body)
		if k, r, u := CheckKeys(body, nil); k != key || r != repeated || u != escaped {
			t.Fatalf("CheckKeys(%q) = %q, %v, %v; the tokenizer says %q, %v, %v", body, k, r, u, key, repeated, escaped)
		}
	})
}

type checkKeysTarget struct {
	Name  string `json:"name"`
	Items []struct {
		ID  int             `json:"id"`
		Raw json.RawMessage `json:"raw"`
	} `json:"items"`
	ByKey map[string]*struct {
		N int `json:"n"`
	} `json:"by_key"`
	Any      any    `json:"any"`
	Skipped  string `json:"-"`
	Dash     string `json:"-,"`
	Untagged int
	embedded
	unexported int
}

type embedded struct {
	Inner string `json:"inner"`
}

// TestCheckKeys: where an object is decoded into a struct, at any depth,
// only its fields' exact names are known; maps, interfaces and
// json.RawMessage take any key. Each body decodes into the type.
func TestCheckKeys(t *testing.T) {
	for _, tc := range []struct {
		body, key         string
		repeated, unknown bool
	}{
		{body: `{"name":"a","items":[{"id":1,"raw":{"ID":2,"x":3}}],"by_key":{"ANY":{"n":1}},"any":{"NAME":1}}`},
		{body: `{"-":"a","Untagged":1,"inner":"b","name":"\u0063"}`},                              // an escape in a value is the value's business
		{body: `{"by_key":{"\u0041":{"n":1}},"any":{"\u0042":1},"items":[{"raw":{"\u0043":1}}]}`}, // a map's keys are data, escaped or not
		{body: `null`},
		{body: `{"NAME":"a"}`, key: "NAME", unknown: true},
		{body: `{"name":"a","Name":"b"}`, key: "Name", unknown: true},
		{body: `{"items":[{"id":1},{"Id":2}]}`, key: "Id", unknown: true},
		{body: `{"by_key":{"a":{"N":1}}}`, key: "N", unknown: true},
		{body: `{"untagged":1}`, key: "untagged", unknown: true},
		{body: `{"Inner":"b"}`, key: "Inner", unknown: true},
		{body: `{"Skipped":"b"}`, key: "Skipped", unknown: true},
		{body: `{"by_\u212aey":{}}`, key: `by_\u212aey`, unknown: true},       // a Kelvin sign, which encoding/json takes for k
		{body: `{"\u006eame":"c"}`, key: `\u006eame`, unknown: true},          // encoding/json reads it as name: a second byte form
		{body: `{"items":[{"i\u0064":1}]}`, key: `i\u0064`, unknown: true},    // in a struct at any depth
		{body: `{"by_key":{"a":{"\u006e":1}}}`, key: `\u006e`, unknown: true}, // a map's value that is a struct
		{body: `{"name":"a","\u006eame":"b"}`, key: "name", repeated: true},   // one name twice, whatever the form
		{body: `{"name":"a","name":"b"}`, key: "name", repeated: true},
		{body: `{"any":{"x":1,"x":2}}`, key: "x", repeated: true},
	} {
		var v checkKeysTarget
		if err := json.Unmarshal([]byte(tc.body), &v); err != nil {
			t.Fatalf("%s does not decode: %v", tc.body, err)
		}
		key, repeated, unknown := CheckKeys([]byte(tc.body), reflect.TypeOf(&v))
		if key != tc.key || repeated != tc.repeated || unknown != tc.unknown {
			t.Errorf("CheckKeys(%s) = %q, %v, %v; want %q, %v, %v", tc.body, key, repeated, unknown, tc.key, tc.repeated, tc.unknown)
		}
	}
}

// TestCheckKeysUntyped: with no type (a DPoP proof's header, claims and
// JWK), a name of the body's own object is refused when it holds an
// escape; deeper objects are data.
func TestCheckKeysUntyped(t *testing.T) {
	for _, tc := range []struct{ body, key string }{
		{body: `{"typ":"dpop+jwt","alg":"ES256","jwk":{"\u006bty":"EC"},"x":{"\u0061":[{"\u0062":1}]}}`},
		{body: `[{"\u0061":1}]`},
		{body: `{"a":"\u0062\"\\"}`},
		{body: `{"typ":"dpop+jwt","\u0061lg":"ES256"}`, key: `\u0061lg`},
		{body: `{"a\"b":1}`, key: `a\"b`},
	} {
		key, repeated, unknown := CheckKeys([]byte(tc.body), nil)
		if key != tc.key || repeated || unknown != (tc.key != "") {
			t.Errorf("CheckKeys(%s, nil) = %q, %v, %v; want %q, false, %v", tc.body, key, repeated, unknown, tc.key, tc.key != "")
		}
	}
}

// Types whose JSON names clash, resolved by encoding/json's rules
// (FieldsAsEncodingJSON).
type (
	clashX struct {
		clashY
		G int `json:"g"` // at depth 2 twice, through clashA and clashB: dropped
	}
	clashY struct {
		F int `json:"f"` // at depth 3 once: clashX is looked into once
	}
	clashA    struct{ clashX }
	clashB    struct{ clashX }
	clashDeep struct {
		Name struct {
			X int `json:"x"`
		} `json:"name"`
	}
	clashMid struct{ clashDeep }
	// shadowing's own name beats the one two levels down, though that
	// one comes later.
	shadowing struct {
		Name map[string]int `json:"name"`
		clashMid
	}
	clashTagged struct {
		Other struct {
			X int `json:"x"`
		} `json:"Name"`
	}
	clashUntagged struct{ Name map[string]int }
	// At one depth, the tagged Name beats the untagged one.
	taggedWins struct {
		clashTagged
		clashUntagged
		clashA
		clashB
	}
	unexportedEmbedded struct {
		U int `json:"u"`
	}
	// A tagged embedded struct is a field, even unexported.
	taggedEmbedded struct {
		unexportedEmbedded `json:"e"`
	}
	SelfEmbedding struct {
		*SelfEmbedding
		N int `json:"n"`
		M *MutualEmbedding
	}
	MutualEmbedding struct {
		*SelfEmbedding
		O int `json:"o"`
	}
)

// TestFieldsAsEncodingJSON: CheckKeys takes a name for a struct's field
// where encoding/json fills one (DisallowUnknownFields: not an unknown
// field), the nested value's type included, when names clash across
// embedded structs; and it returns on a struct that embeds a pointer to
// itself (the old recursion overflowed the stack).
func TestFieldsAsEncodingJSON(t *testing.T) {
	for _, tc := range []struct {
		t    reflect.Type
		body string
	}{
		{reflect.TypeFor[taggedWins](), `{"f":0}`},
		{reflect.TypeFor[taggedWins](), `{"g":0}`},
		{reflect.TypeFor[taggedWins](), `{"Name":{"x":0}}`},
		{reflect.TypeFor[taggedWins](), `{"Name":{"y":0}}`},
		{reflect.TypeFor[shadowing](), `{"name":{"y":0}}`},
		{reflect.TypeFor[shadowing](), `{"name":{"y":0},"x":0}`},
		{reflect.TypeFor[taggedEmbedded](), `{"e":{"u":0}}`},
		{reflect.TypeFor[taggedEmbedded](), `{"u":0}`},
		{reflect.TypeFor[SelfEmbedding](), `{"n":0,"o":0}`},
		{reflect.TypeFor[SelfEmbedding](), `{"n":0,"M":{"o":0,"n":0}}`},
		{reflect.TypeFor[MutualEmbedding](), `{"o":0,"n":0,"M":{"o":0}}`},
		{reflect.TypeFor[MutualEmbedding](), `{"SelfEmbedding":{}}`},
	} {
		dec := json.NewDecoder(bytes.NewReader([]byte(tc.body)))
		dec.DisallowUnknownFields()
		err := dec.Decode(reflect.New(tc.t).Interface())
		fills := err == nil || !strings.HasPrefix(err.Error(), "json: unknown field ")
		if _, _, unknown := CheckKeys([]byte(tc.body), tc.t); unknown == fills {
			t.Errorf("%v: CheckKeys(%s) unknown = %v; encoding/json: %v", tc.t, tc.body, unknown, err)
		}
	}
}

func BenchmarkCheckKeys(b *testing.B) {
	body := []byte(`{"typ":"dpop+jwt","alg":"ES256","jwk":{"kty":"EC","crv":"P-256","x":"l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs","y":"9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA"}}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, repeated, _ := CheckKeys(body, nil); repeated {
			b.Fatal("no key repeats")
		}
	}
}
