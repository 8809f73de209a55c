package token

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// repeatsKeyReference is the repeated-key check as it was first written, on
// encoding/json's tokenizer: slow, and the oracle the scanner is held to.
func repeatsKeyReference(body []byte) bool {
	type frame struct {
		keys    map[string]struct{}
		inValue bool
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
			k := tok.(string)
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

// FuzzCheckKeys: on any bytes the scanner returns; on every valid JSON
// text it finds a repeated key where the tokenizer does, escapes, nesting,
// and strings holding brackets and quotes included. Keys equal only under
// case folding (k, K and the Kelvin sign) are not repeats: nothing reads
// them as one name any more (a struct's fields are matched exactly).
func FuzzCheckKeys(f *testing.F) {
	for _, s := range []string{
		`{"a":1,"a":2}`, `{"a":{"b":1,"b":2}}`, `{"a":[{"b":1},{"c":1,"c":2}]}`, `[{"a":1},{"a":1}]`,
		`{"a":{"a":{"a":1}},"b":{"a":2}}`, `{"a":[],"b":{},"c":"{\"c\":1}"}`, `{"k":1,"K":2}`, `{"k":1,"\u212a":2}`,
		`{"s":1,"ſ":2}`, `{"a\"b":1,"a\"B":2}`, `{"x":"]}","y":"\\","x ":1}`, `{"\u0061":1,"a":2}`, `"a"`, `[]`, `{}`,
		`{"a":[1,"b",{"b":[{"b":1}]}],"b":null}`, ` { "a" : 1 , "a" : 2 } `,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		CheckKeys(body, reflect.TypeFor[checkKeysTarget]()) // any bytes: it returns, whatever it answers
		if !json.Valid(body) {
			return
		}
		if _, got, _ := CheckKeys(body, nil); got != repeatsKeyReference(body) {
			t.Fatalf("CheckKeys(%q) repeated = %v; the tokenizer says %v", body, got, !got)
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
		{body: `{"-":"a","Untagged":1,"inner":"b","\u006eame":"c"}`}, // escapes are read as encoding/json reads them
		{body: `null`},
		{body: `{"NAME":"a"}`, key: "NAME", unknown: true},
		{body: `{"name":"a","Name":"b"}`, key: "Name", unknown: true},
		{body: `{"items":[{"id":1},{"Id":2}]}`, key: "Id", unknown: true},
		{body: `{"by_key":{"a":{"N":1}}}`, key: "N", unknown: true},
		{body: `{"untagged":1}`, key: "untagged", unknown: true},
		{body: `{"Inner":"b"}`, key: "Inner", unknown: true},
		{body: `{"Skipped":"b"}`, key: "Skipped", unknown: true},
		{body: `{"by_\u212aey":{}}`, key: "by_\u212aey", unknown: true}, // a Kelvin sign, which encoding/json takes for k
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

func BenchmarkCheckKeys(b *testing.B) {
	body := []byte(`{"typ":"dpop+jwt","alg":"ES256","jwk":{"kty":"EC","crv":"P-256","x":"l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs","y":"9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA"}}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, repeated, _ := CheckKeys(body, nil); repeated {
			b.Fatal("no key repeats")
		}
	}
}
