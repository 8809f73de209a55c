//go:build deps

// oauth2-api-mysql is the root main package built from this module
// (overlay.json), which go mod tidy does not see: these are its imports
// from outside store, named here so that tidy, which reads every build
// tag, keeps their modules in this module's go.mod and go.sum. The deps
// tag is never set: nothing is built from this file.

package mysql

import (
	_ "golang.org/x/time/rate"
	_ "oauth2-api/auth"
	_ "oauth2-api/httpx"
	_ "oauth2-api/metrics"
	_ "oauth2-api/ratelimit"
	_ "oauth2-api/token"
)
