package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"oauth2-api/store/storetest"
)

// VerifyAudit reads the head row, then the events, in two statements
// outside one snapshot. An event appended between them (a live server: any
// login) is read past the head's n, and an intact log is reported as
// "events were deleted from the end": `audit verify` exits 1 on a healthy,
// busy server, and an operator learns to ignore it.
// A regression test: VerifyAudit now reads one snapshot.
func TestAuditVerifyWhileAppending(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			url := storetest.URL(t, d)
			db, writer := storetest.OpenURL(t, url), storetest.OpenURL(t, url)
			c, stop := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			wg.Go(func() {
				for i := 0; c.Err() == nil; i++ {
					writer.Audit(c, event("login.failure", fmt.Sprint(i)))
				}
			})
			defer func() { stop(); wg.Wait() }()
			for i := range 200 {
				if _, err := db.VerifyAudit(ctx, ""); err != nil {
					t.Fatalf("verify %d of an intact log while it grows: %v", i, err)
				}
			}
		})
	}
}
