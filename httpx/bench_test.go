package httpx

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"oauth2-api/metrics"
)

// BenchmarkDecodeJSON is a login body through DecodeJSON.
func BenchmarkDecodeJSON(b *testing.B) {
	body := []byte(`{"login":"ann@example.com","password":"correct horse battery staple"}`)
	var dst struct {
		Login    string `json:"login"`
		Password string `json:"password"`
	}
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest("POST", "/", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		if err := DecodeJSON(r, &dst); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAccessLog is the Observe middleware around a trivial handler:
// request id, client IP, metrics and one JSON access log line.
func BenchmarkAccessLog(b *testing.B) {
	reg := metrics.NewRegistry()
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/profile", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	h := Observe(log, NewMetrics(reg), IPResolver{Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, time.Now, mux)
	r := httptest.NewRequest("GET", "/api/v1/profile", nil)
	r.RemoteAddr = "10.1.2.3:4444"
	r.Header.Set("X-Forwarded-For", "203.0.113.7")
	r.Header.Set("User-Agent", "bench/1.0")
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}

// BenchmarkLogWriter is one access-log-sized line through the buffered writer.
func BenchmarkLogWriter(b *testing.B) {
	lw := NewLogWriter(io.Discard, 64<<10, 100*time.Millisecond)
	defer lw.Close()
	line := []byte(`{"time":"2026-11-26T00:00:00Z","level":"INFO","msg":"request","request_id":"abc-1","method":"GET","route":"/api/v1/profile","status":200}` + "\n")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			lw.Write(line)
		}
	})
}
