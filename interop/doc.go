// Package interop holds tests that drive the real oauth2-api binary with
// widely used client libraries (golang.org/x/oauth2, golang-jwt, go-jose,
// go-oidc, zitadel/oidc) and a real browser (chromedp and Chromium), as an
// operator and a person would. It has no code of its own: see the *_test.go files and
// README.md.
//
// It is a module of its own, so that its dependencies never reach the
// server's go.mod.
package interop
