package token

import (
	"cmp"
	"encoding/json"
	"maps"
	"reflect"
	"strings"
	"sync"
	"unicode/utf8"
)

// CheckKeys looks at every object key in body (valid JSON, which
// encoding/json has decoded into a value of type t, or nil) and returns the
// first at fault, with what is wrong with it. An object may not repeat a
// key (repeated): encoding/json keeps the last value while a proxy, a log
// or a validator may have read the first, so {"password":"short",
// "password":"long…"} must be refused, not resolved. Keys are compared
// unescaped here, as encoding/json and RFC 8259 compare them.
//
// An object decoded into a struct may hold only the JSON names of its
// fields, byte for byte as sent (unknown): encoding/json matches names in
// any letter case, so {"EMAIL":…} would fill the field named email, where
// JSON names are case-sensitive (RFC 8259 §8.3); and it unescapes them, so
// {"\u0065mail":…} would too, a second byte form of one name. Every name
// this server reads is plain ASCII (lower case, digits, _) and needs no
// escape, so a name with one is unknown (key is then the name as sent) in
// a struct, and in body's own object whatever t is: its names are the
// protocol's (registration metadata, read as a map; a JOSE header, claims
// or JWK, read with t nil). Deeper objects decoded into maps, interfaces or
// json.Unmarshalers take any name, escaped too: they are data (Go's
// encoding/json escapes <, > and & in a map's keys as in its strings).
//
// The scan only tracks where keys are, without checking syntax; on bytes
// that are not JSON its answer means nothing, but it still returns.
// (encoding/json's tokenizer did the same at a dozen allocations per
// token; FuzzCheckKeys holds the two to the same faults.)
func CheckKeys(body []byte, t reflect.Type) (key string, repeated, unknown bool) {
	type frame struct {
		keys    map[string]struct{} // nil for an array
		wantKey bool                // the object's next string is a key
		fields  map[string]reflect.Type
		next    reflect.Type // what the value that follows is decoded into
	}
	var stack []frame
	for i := 0; i < len(body); i++ {
		switch c := body[i]; c {
		case '{', '[':
			into := t
			if len(stack) > 0 {
				into = stack[len(stack)-1].next
			}
			s := shapeOf(into)
			f := frame{fields: s.fields, next: s.elem}
			if c == '{' {
				f.keys, f.wantKey = map[string]struct{}{}, true
			}
			stack = append(stack, f)
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
				return "", false, false // an unterminated string: not JSON
			}
			if len(stack) > 0 && stack[len(stack)-1].wantKey {
				top := &stack[len(stack)-1]
				k := string(body[i+1 : j])
				if escaped || !utf8.ValidString(k) { // read as encoding/json reads it: each invalid byte is U+FFFD
					json.Unmarshal(body[i:j+1], &k) // valid JSON: cannot fail
				}
				if _, dup := top.keys[k]; dup {
					return k, true, false
				}
				top.keys[k] = struct{}{}
				top.wantKey = false
				if escaped && (top.fields != nil || len(stack) == 1) {
					return string(body[i+1 : j]), false, true
				}
				if top.fields != nil {
					ft, ok := top.fields[k]
					if !ok {
						return k, false, true
					}
					top.next = ft
				}
			}
			i = j
		}
	}
	return "", false, false
}

// A shape is what CheckKeys needs of a type: a struct's fields by JSON
// name, or the type of a map's, slice's or array's elements.
type shape struct {
	fields map[string]reflect.Type
	elem   reflect.Type
}

// shapes caches shapeOf by type, as encoding/json caches its fields: the
// types are the program's own, so it stays small, and a request reads it
// without allocating.
var shapes sync.Map

var unmarshaler = reflect.TypeFor[json.Unmarshaler]()

// shapeOf returns the shape of t, after pointers; nothing for nil, an
// interface, a json.Unmarshaler (json.RawMessage) or a scalar.
func shapeOf(t reflect.Type) shape {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil {
		return shape{}
	}
	if s, ok := shapes.Load(t); ok {
		return s.(shape)
	}
	var s shape
	switch k := t.Kind(); {
	case reflect.PointerTo(t).Implements(unmarshaler):
	case k == reflect.Struct:
		s.fields = fieldsOf(t)
	case k == reflect.Map || k == reflect.Slice || k == reflect.Array:
		s.elem = t.Elem()
	}
	shapes.Store(t, s)
	return s
}

// fieldsOf returns the fields of struct t by JSON name, resolved as
// encoding/json resolves them (its typeFields): the tag's name, else the Go
// name; an untagged embedded struct's fields are t's own, one level deeper.
// Of the fields a name could mean, the shallowest wins, and of those a
// tagged one; if two are left (a struct embedded twice at one level holds
// each of its names twice), encoding/json drops the name, and it is unknown
// here too. A struct met at a shallower level is not looked into again,
// which also ends one that embeds a pointer to itself.
func fieldsOf(t reflect.Type) map[string]reflect.Type {
	fields := map[string]reflect.Type{} // nil while two fields clash
	rank := map[string]int{}            // the winner's: 2 × depth, + 1 if untagged
	seen := map[reflect.Type]bool{}
	level := map[reflect.Type]int{t: 1} // the structs at this depth: how often each is embedded
	for depth := 0; len(level) > 0; depth++ {
		next := map[reflect.Type]int{}
		for st, count := range level {
			if seen[st] {
				continue
			}
			seen[st] = true
			for f := range st.Fields() {
				tag := f.Tag.Get("json")
				name, _, _ := strings.Cut(tag, ",")
				ft := f.Type
				if ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				embedded := f.Anonymous && ft.Kind() == reflect.Struct
				if tag == "-" || !f.IsExported() && !embedded {
					continue
				}
				if embedded && name == "" {
					next[ft]++
					continue
				}
				n, r := cmp.Or(name, f.Name), 2*depth
				if name == "" {
					r++
				}
				if old, ok := rank[n]; !ok || r < old {
					rank[n], fields[n] = r, f.Type
				} else if r == old {
					fields[n] = nil
				}
				if count > 1 && rank[n] == r {
					fields[n] = nil
				}
			}
		}
		level = next
	}
	maps.DeleteFunc(fields, func(_ string, t reflect.Type) bool { return t == nil })
	return fields
}

// HasField reports whether name is, byte for byte, the JSON name of a
// field of struct t.
func HasField(t reflect.Type, name string) bool {
	_, ok := shapeOf(t).fields[name]
	return ok
}
