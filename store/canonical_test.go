package store

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// FuzzAuditCanonical: two different events never share canonical bytes,
// so no edit can keep an event's hash.
func FuzzAuditCanonical(f *testing.F) {
	f.Add("login.failure", "42", "", "1", "a:b", "k", "v", "login.failure", "4", "2", "1", "a:b", "k", "v")
	f.Add("a", "b\n1:c", "", "", "", "", "", "a", "b", "1:c", "", "", "", "")
	f.Fuzz(func(t *testing.T, a1, b1, c1, d1, e1, k1, v1, a2, b2, c2, d2, e2, k2, v2 string) {
		mk := func(a, b, c, d, e, k, v string) (*Event, []byte) {
			ev := &Event{ID: 7, Time: time.UnixMilli(1), Action: a, Actor: b, Subject: c, ClientID: d, IP: e, RequestID: k, Outcome: v,
				Detail: map[string]string{k: v}}
			detail, _ := json.Marshal(ev.Detail)
			return ev, canonical(ev, detail)
		}
		x, cx := mk(a1, b1, c1, d1, e1, k1, v1)
		y, cy := mk(a2, b2, c2, d2, e2, k2, v2)
		if bytes.Equal(cx, cy) && !reflect.DeepEqual(x, y) {
			t.Fatalf("different events share canonical bytes: %+v, %+v", x, y)
		}
	})
}
