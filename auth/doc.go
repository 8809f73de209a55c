// Package auth is the server: users and passwords, sessions, the OAuth 2.0
// grants and OpenID Connect, the REST API and the pages a person sees. Its
// ways in are listed in one table, routes.go.
//
// # Security
//
// Who may call what is decided in one place: every line of the route table
// (routes.go) names its caller (anyone; a person at the pages; a client
// authenticated as at the token endpoint; a confidential client; the holder
// of an access token; a first-party user; an admin; for dynamic registration,
// the holder of an initial access token, and a registered client by its
// registration access token, register.go) and its budget, and
// the middleware of that caller (callers.go) checks it before the handler
// runs. Handlers check no identity themselves, only ownership of what they
// act on (a client revokes and introspects only its own tokens, a resource
// server introspects those for its resource too; a user ends only their own
// sessions).
//
// What it trusts: the database (package store) and the keys it was given
// (package token). Everything from the network is checked: JSON bodies and
// forms in their one accepted form (package httpx, readForm); client
// secrets as SHA-256 digests compared in constant time (secretMatches);
// passwords with argon2id and a constant-time compare (password.go); CSRF
// tokens with hmac.Equal (browser.go); PKCE verifiers in constant time
// (verifierOK). AUDITING.md at the repository root maps every secret
// comparison, token mint and check, and authorization decision to its
// function.
//
// Where tokens are minted: access and refresh tokens in tokens.go
// (Tokens.Access, StartSession, Rotate), ID tokens in oidc.go, authorization
// codes in authorize.go (issueCode), reset and email verification links in
// the mail queue's jobs (forgotJob, verifyJob). Where they are checked:
// Tokens.Verify (signature, then the revocation list), the rotation of a
// refresh token in one database statement (store.RotateRefresh), codes in
// grants.go (exchangeCode). Sessions end as API.md "Sessions and revocation"
// says: every access token of a user names its session in sid, and ending a
// session is stored in the database before it is answered, then applied to
// this instance's revocation list.
package auth
