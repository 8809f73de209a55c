// Package httpx holds the HTTP plumbing every handler shares: JSON decoding
// and encoding with limits, the one table of errors and its writers
// (errors.go), the client IP behind trusted proxies, the connection cap,
// and the middleware chain (recovery, request id, access log and metrics,
// security headers, CORS, body limit, rate limits).
//
// # Security
//
// It trusts nothing a request says. A JSON body is accepted in one form
// only (UnmarshalStrict: valid UTF-8, known fields by their exact names,
// unescaped, no repeated key, one value) and within MaxBody; forwarding headers are believed only from
// TRUSTED_PROXIES (IPResolver), so a client cannot pick the address its
// budgets and log lines are keyed by. No answer carries an internal error's
// text: Classify logs it with the request id and the client sees "internal
// error" (500) or "temporarily unavailable" (503). The access log holds the
// path, never the query or a header's value.
package httpx

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"oauth2-api/token"
)

// MaxBody is the largest request body accepted (API.md: 413 above it).
const MaxBody = 1 << 20

// Header values that never change, shared so that setting them does not
// allocate (nothing appends to or edits a value slice in place).
var (
	valJSON    = []string{"application/json"}
	valNoStore = []string{"no-store"}
	valNoCache = []string{"no-cache"}
)

// buffers holds the buffers JSON encodes into.
var buffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// JSON writes v as the JSON body with status.
func JSON(w http.ResponseWriter, status int, v any) {
	buf := buffers.Get().(*bytes.Buffer)
	defer buffers.Put(buf)
	buf.Reset()
	if err := json.NewEncoder(buf).Encode(v); err != nil { // only for values a handler built wrongly
		status = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString(`{"error":"server_error","message":"internal error"}` + "\n")
	}
	h := w.Header()
	h["Content-Type"] = valJSON
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	w.Write(buf.Bytes()) // Encode ends the value with a newline
}

// NoStore marks a response as holding credentials (RFC 6749 §5.1).
func NoStore(w http.ResponseWriter) {
	h := w.Header()
	h["Cache-Control"] = valNoStore
	h["Pragma"] = valNoCache
}

// DecodeJSON reads r's body into dst. It answers, as an *Error: 415 unless the
// Content-Type is application/json, 413 over MaxBody, 400 for invalid UTF-8,
// malformed JSON, a wrong type, an unknown field (a name in another letter case
// or with an escape is one), a repeated key, or anything after the value.
func DecodeJSON(r *http.Request, dst any) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return E(KindMediaType, "Content-Type must be application/json")
	}
	body, err := ReadBody(r)
	if errors.Is(err, ErrTooLarge) {
		return E(KindTooLarge, "request body is larger than %d bytes", MaxBody)
	}
	if err != nil {
		return E(KindInvalid, "could not read the request body")
	}
	return UnmarshalStrict(body, dst)
}

// ErrTooLarge means a request body is over MaxBody.
var ErrTooLarge = errors.New("request body too large")

// ReadBody reads the whole request body, at most MaxBody bytes (a longer
// body is ErrTooLarge). A small body of announced length is read into a
// buffer of exactly that size; a large one grows as bytes arrive, so that a
// client announcing a megabyte and sending nothing does not make the server
// hold a megabyte.
func ReadBody(r *http.Request) ([]byte, error) {
	if r.ContentLength > MaxBody {
		return nil, ErrTooLarge
	}
	if n := r.ContentLength; n >= 0 && n <= 16<<10 {
		body := make([]byte, n)
		if _, err := io.ReadFull(r.Body, body); err != nil {
			return nil, readErr(err)
		}
		return body, nil // net/http's body reader stops at Content-Length
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
	if err != nil {
		return nil, readErr(err)
	}
	if len(body) > MaxBody {
		return nil, ErrTooLarge
	}
	return body, nil
}

func readErr(err error) error {
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return ErrTooLarge
	}
	return err
}

// UnmarshalStrict decodes one JSON value from body into dst, refusing invalid
// UTF-8 (encoding/json would silently replace it), unknown fields, a field
// named in another letter case than its own or with an escape (encoding/json
// would take {"EMAIL":…} and {"\u0065mail":…} for email), a key an object
// repeats, and trailing data; escapes in values are read as usual.
// Failures are 400 *Errors whose message names no input.
func UnmarshalStrict(body []byte, dst any) error {
	if !utf8.Valid(body) {
		return E(KindInvalidJSON, "request body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.Is(err, io.EOF):
			return E(KindInvalidJSON, "request body is empty")
		case errors.As(err, &syn):
			return E(KindInvalidJSON, "malformed JSON at byte %d", syn.Offset)
		case errors.As(err, &typ):
			return E(KindInvalidJSON, "field %q has the wrong type", Clip(typ.Field, 64))
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return E(KindInvalidJSON, "unknown field %s", Clip(strings.TrimPrefix(err.Error(), "json: unknown field "), 64))
		default:
			return E(KindInvalidJSON, "malformed JSON")
		}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return E(KindInvalidJSON, "unexpected data after the JSON value")
	}
	// encoding/json reads null into a struct as {}: a second form of it.
	if bytes.Equal(bytes.Trim(body, " \t\r\n"), []byte("null")) {
		return E(KindInvalidJSON, "request body must be a JSON object, not null")
	}
	// After the decode, so that the shapes of body and dst agree.
	switch key, repeated, unknown := token.CheckKeys(body, reflect.TypeOf(dst)); {
	case repeated:
		return E(KindInvalidJSON, "an object repeats a key")
	case unknown: // in another letter case or escaped, which encoding/json took for a field
		return E(KindInvalidJSON, "unknown field %q", Clip(key, 64))
	}
	return nil
}

// Clip shortens s to at most n bytes and "…", so that an error message or a
// log line never echoes much of the input. It cuts where a rune starts, never
// inside one; it does not escape: callers quote the result (%q) or log it as
// JSON, which escapes control characters and invalid UTF-8.
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n-- // back to the first byte of the rune the cut would split
	}
	return s[:n] + "…"
}
