package httpx

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Kind is a class of failure a client may learn of: the one vocabulary of
// errors. errorTable gives each its HTTP status and its code on the two JSON
// surfaces, the REST API ({"error","message"}, API.md) and the OAuth
// endpoints ({"error","error_description"}, RFC 6749 §5.2, RFC 6750 §3.1);
// the HTML pages show the status and the message. A handler returns an
// *Error of some kind, or any other error: that one is KindUnavailable if it
// says so (store.ErrUnavailable, auth.ErrBusy: a retry may succeed) and
// KindInternal otherwise (a bug: logged with the request id, never shown),
// or KindClientClosed for unavailability once the client hung up (Classify).
type Kind uint8

// The kinds. Their order is the table's.
const (
	KindInternal                Kind = iota // a bug
	KindUnavailable                         // the database, or every password-hashing slot, is busy
	KindClientClosed                        // the client went away first: nobody reads the answer
	KindInvalid                             // a malformed request
	KindInvalidJSON                         // a body that is not the one JSON form accepted
	KindValidation                          // a well-formed value that breaks a rule (REST: 422)
	KindUnauthorized                        // no credentials at all
	KindInvalidToken                        // a bad, expired or revoked token
	KindInvalidCredentials                  // a wrong login or password
	KindInvalidClient                       // client authentication failed
	KindForbidden                           // authenticated, not allowed
	KindInsufficientScope                   // the token lacks a scope
	KindNotFound                            //
	KindMethodNotAllowed                    // the path exists, not for this method (with Allow)
	KindConflict                            // a duplicate
	KindTooLarge                            // a body over MaxBody
	KindMediaType                           // a body of the wrong type
	KindRateLimited                         // a per-IP budget is spent
	KindThrottled                           // an account's login budget is spent
	KindInvalidGrant                        // OAuth: code, refresh token or verifier refused
	KindUnauthorizedClient                  // OAuth: the client may not use this grant or flow
	KindUnsupportedGrantType                // OAuth
	KindUnsupportedResponseType             // OAuth
	KindInvalidScope                        // OAuth
	KindAccessDenied                        // OAuth: the user said no
	KindLoginRequired                       // OpenID Connect: prompt=none, not signed in
	KindConsentRequired                     // OpenID Connect: prompt=none, no consent
	KindInvalidDPoPProof                    // DPoP at the token and PAR endpoints (RFC 9449 §5)
	KindUseDPoPNonce                        // DPoP: the server's nonce is required (RFC 9449 §8)
	KindDPoPProofRefused                    // DPoP at a resource (RFC 9449 §7.1)
	KindInvalidTarget                       // RFC 8707: a resource not configured, or not granted
	KindInvalidRedirectURI                  // dynamic registration: a redirect URI is refused (RFC 7591 §3.2.2)
	KindInvalidClientMetadata               // dynamic registration: other metadata is refused (RFC 7591 §3.2.2)
	KindAuthorizationPending                // device grant: the user has not decided yet (RFC 8628 §3.5)
	KindSlowDown                            // device grant: polled before the interval passed (RFC 8628 §3.5)
	KindExpiredToken                        // device grant: the device code expired (RFC 8628 §3.5)
	KindRequestNotSupported                 // OpenID Connect: a request object, which this server does not take (Core §6.1)
)

// errorTable: kind → status, REST code, OAuth code ("" for none: RFC 6750
// §3.1 gives a request without credentials no error code).
var errorTable = [...]struct {
	status      int
	rest, oauth string
}{
	KindInternal:                {http.StatusInternalServerError, "server_error", "server_error"},
	KindUnavailable:             {http.StatusServiceUnavailable, "service_unavailable", "temporarily_unavailable"},
	KindClientClosed:            {499, "client_closed_request", "client_closed_request"}, // nginx's status, for the access log and metrics
	KindInvalid:                 {http.StatusBadRequest, "invalid_request", "invalid_request"},
	KindInvalidJSON:             {http.StatusBadRequest, "invalid_json", "invalid_request"},
	KindValidation:              {http.StatusUnprocessableEntity, "validation_failed", "invalid_request"},
	KindUnauthorized:            {http.StatusUnauthorized, "unauthorized", ""},
	KindInvalidToken:            {http.StatusUnauthorized, "invalid_token", "invalid_token"},
	KindInvalidCredentials:      {http.StatusUnauthorized, "invalid_credentials", "invalid_grant"},
	KindInvalidClient:           {http.StatusUnauthorized, "invalid_client", "invalid_client"},
	KindForbidden:               {http.StatusForbidden, "forbidden", "access_denied"},
	KindInsufficientScope:       {http.StatusForbidden, "insufficient_scope", "insufficient_scope"},
	KindNotFound:                {http.StatusNotFound, "not_found", "invalid_request"},
	KindMethodNotAllowed:        {http.StatusMethodNotAllowed, "method_not_allowed", "invalid_request"},
	KindConflict:                {http.StatusConflict, "conflict", "invalid_request"},
	KindTooLarge:                {http.StatusRequestEntityTooLarge, "request_too_large", "invalid_request"},
	KindMediaType:               {http.StatusUnsupportedMediaType, "unsupported_media_type", "invalid_request"},
	KindRateLimited:             {http.StatusTooManyRequests, "rate_limited", "rate_limited"},
	KindThrottled:               {http.StatusTooManyRequests, "too_many_attempts", "too_many_attempts"},
	KindInvalidGrant:            {http.StatusBadRequest, "invalid_grant", "invalid_grant"},
	KindUnauthorizedClient:      {http.StatusBadRequest, "unauthorized_client", "unauthorized_client"},
	KindUnsupportedGrantType:    {http.StatusBadRequest, "unsupported_grant_type", "unsupported_grant_type"},
	KindUnsupportedResponseType: {http.StatusBadRequest, "unsupported_response_type", "unsupported_response_type"},
	KindInvalidScope:            {http.StatusBadRequest, "invalid_scope", "invalid_scope"},
	KindAccessDenied:            {http.StatusBadRequest, "access_denied", "access_denied"}, // a redirect, or 400 at the token endpoint (RFC 8628 §3.5, RFC 6749 §5.2)
	KindLoginRequired:           {http.StatusBadRequest, "login_required", "login_required"},
	KindConsentRequired:         {http.StatusBadRequest, "consent_required", "consent_required"},
	KindInvalidDPoPProof:        {http.StatusBadRequest, "invalid_dpop_proof", "invalid_dpop_proof"},
	KindUseDPoPNonce:            {http.StatusBadRequest, "use_dpop_nonce", "use_dpop_nonce"},
	KindDPoPProofRefused:        {http.StatusUnauthorized, "invalid_dpop_proof", "invalid_dpop_proof"},
	KindInvalidTarget:           {http.StatusBadRequest, "invalid_target", "invalid_target"},
	KindInvalidRedirectURI:      {http.StatusBadRequest, "invalid_redirect_uri", "invalid_redirect_uri"},
	KindInvalidClientMetadata:   {http.StatusBadRequest, "invalid_client_metadata", "invalid_client_metadata"},
	KindAuthorizationPending:    {http.StatusBadRequest, "authorization_pending", "authorization_pending"},
	KindSlowDown:                {http.StatusBadRequest, "slow_down", "slow_down"},
	KindExpiredToken:            {http.StatusBadRequest, "expired_token", "expired_token"},
	KindRequestNotSupported:     {http.StatusBadRequest, "request_not_supported", "request_not_supported"},
}

// Error is an error a client may see.
type Error struct {
	Kind    Kind
	Code    string // the REST code, when more precise than the kind's (registration_disabled)
	Message string // for the client: never an internal error's text
	// RetryAfter, when positive, is sent as Retry-After in whole seconds.
	RetryAfter time.Duration
	// Authenticate, when set, is sent as WWW-Authenticate (RFC 6750 §3).
	Authenticate string

	cause error // what an internal or unavailable error hides, for the log
}

func (e *Error) Error() string {
	if e.cause != nil {
		return fmt.Sprintf("%s: %s: %v", e.RESTCode(), e.Message, e.cause)
	}
	return e.RESTCode() + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.cause }

// Status is the kind's HTTP status.
func (e *Error) Status() int { return errorTable[e.Kind].status }

// RESTCode is the "error" member of a REST answer.
func (e *Error) RESTCode() string {
	if e.Code != "" {
		return e.Code
	}
	return errorTable[e.Kind].rest
}

// OAuthCode is the "error" member of an OAuth answer ("" for none).
func (e *Error) OAuthCode() string { return errorTable[e.Kind].oauth }

// E returns an *Error of kind whose message is the formatted text.
func E(kind Kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// Classify returns the *Error the client sees for err, and logs what it
// hides: an internal error at level error, unavailability at warn, each
// with the request id. Once the request's own context is done (the client
// hung up), unavailability is the client's leaving, not an outage: a
// statement or a wait for a hashing slot cut short. It is 499 at debug, so
// that hanging up moves neither the 503 count nor the WARN lines; a
// statement's own deadline (OpTimeout) under a live request stays a 503,
// and a bug stays one (500, at error) whenever the client left.
func Classify(r *http.Request, log *slog.Logger, err error) *Error {
	if e, ok := errors.AsType[*Error](err); ok {
		return e
	}
	var u interface{ Unavailable() bool }
	if errors.As(err, &u) && u.Unavailable() && r.Context().Err() != nil {
		if log != nil {
			log.DebugContext(r.Context(), "client closed request", "request_id", InfoFrom(r).ID, "err", err)
		}
		return &Error{Kind: KindClientClosed, Message: "the client closed the request", cause: err}
	}
	if errors.As(err, &u) && u.Unavailable() {
		if log != nil {
			log.WarnContext(r.Context(), "service unavailable", "request_id", InfoFrom(r).ID, "err", err)
		}
		return &Error{Kind: KindUnavailable, Message: "the service is temporarily unavailable; retry later", RetryAfter: 5 * time.Second, cause: err}
	}
	if log != nil {
		log.ErrorContext(r.Context(), "internal error", "request_id", InfoFrom(r).ID, "err", err)
	}
	return &Error{Kind: KindInternal, Message: "internal error", cause: err}
}

// SetHeaders sets Retry-After and WWW-Authenticate as e asks.
func (e *Error) SetHeaders(w http.ResponseWriter) {
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(int64((e.RetryAfter+time.Second-1)/time.Second), 10))
	}
	if e.Authenticate != "" {
		w.Header().Set("WWW-Authenticate", e.Authenticate)
	}
}

// WriteError answers err to a REST client: {"error","message"}, with
// no-store as every REST answer (ASVS 8.3.1: the caller check's, the
// mux's and the limiter's too, a refused login's 429 among them). A 401
// carries a Bearer challenge unless the error sets its own (API.md: every
// REST 401; RFC 9110 §15.5.2), a login's and a refresh's too.
func WriteError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	e := Classify(r, log, err)
	if e.Status() == http.StatusUnauthorized && e.Authenticate == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="oauth2-api"`)
	}
	e.SetHeaders(w)
	NoStore(w)
	JSON(w, e.Status(), map[string]string{"error": e.RESTCode(), "message": e.Message})
}

// OAuthText is s as an error_description may hold it (RFC 6749 §5.2:
// %x20-21 / %x23-5B / %x5D-7E): a double quote or a backslash becomes an
// apostrophe, and anything else outside the set goes (a "§", an input's
// "é", a clip's "…").
// Messages quote what they refuse with %q; they stay readable.
func OAuthText(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '"' || r == '\\':
			return '\''
		case r < 0x20 || r > 0x7e:
			return -1
		}
		return r
	}, s)
}

// WriteOAuthError answers err as RFC 6749 §5.2 JSON with no-store. A failed
// client authentication carries a Basic challenge (§5.2: 401 with
// WWW-Authenticate) unless the error sets its own.
func WriteOAuthError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	e := Classify(r, log, err)
	if e.Kind == KindInvalidClient && e.Authenticate == "" {
		w.Header().Set("WWW-Authenticate", `Basic realm="oauth2-api"`)
	}
	e.SetHeaders(w)
	NoStore(w)
	body := map[string]string{"error_description": OAuthText(e.Message)}
	if c := e.OAuthCode(); c != "" {
		body["error"] = c
	}
	JSON(w, e.Status(), body)
}

// MuxErrors serves mux, answering its own 404 (no route) and 405 (none for
// the method; the mux's Allow header kept) in the error table's shapes
// instead of its text/plain: RFC 6749's, with no-store, under /oauth2/, the
// REST API's elsewhere. A path has one spelling: the mux reads
// "/%6detrics" as /metrics, which an exact-path block in front (an ALB
// rule, Cloud Armor) does not, so a percent-encoded path is a 404.
func MuxErrors(log *slog.Logger, mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if r.URL.EscapedPath() != r.URL.Path {
			h, pattern = http.NotFoundHandler(), ""
		}
		if pattern == "" { // a 404, a 405, or a redirect to the cleaned path
			h.ServeHTTP(&muxError{ResponseWriter: w, r: r, log: log}, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// muxError writes the answer of MuxErrors in place of the mux's text.
type muxError struct {
	http.ResponseWriter
	r       *http.Request
	log     *slog.Logger
	replace bool
}

func (m *muxError) WriteHeader(code int) {
	if m.replace = code == http.StatusNotFound || code == http.StatusMethodNotAllowed; !m.replace {
		m.ResponseWriter.WriteHeader(code)
		return
	}
	e, write := E(KindNotFound, "no such endpoint"), WriteError
	if code == http.StatusMethodNotAllowed {
		e = E(KindMethodNotAllowed, "method not allowed here; the Allow header lists those that are")
	}
	if strings.HasPrefix(m.r.URL.Path, "/oauth2/") {
		write = WriteOAuthError
	}
	write(m.ResponseWriter, m.r, m.log, e)
}

func (m *muxError) Write(b []byte) (int, error) {
	if m.replace { // the mux's text
		return len(b), nil
	}
	return m.ResponseWriter.Write(b)
}
