package metrics

import (
	"fmt"
	"math"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

// The exact text: HELP and TYPE lines, escaping, series sorted by label
// values, cumulative buckets (a value on a bound counts in it), the
// initial values of a counter vector at 0, gauges read when written.
func TestTextExact(t *testing.T) {
	r := NewRegistry()
	r.Counter("logins_total", "Successful logins.")
	reqs := r.CounterVecN("http_requests_total",
		"HTTP requests by route and \"code\".\nA second line with a \\ backslash.", []string{"route", "code"})
	r.CounterVec("errors_total", "Errors by kind.", "kind", "b", "a")
	lat := r.HistogramVec("http_request_duration_seconds", "Request latency.", "route")
	r.GaugeFunc("queue_depth", "Items waiting.", func() float64 { return 2.5 })
	reqs.With(`a"b\c`+"\nd", "500").Inc() // created out of order: the output is sorted
	reqs.With("GET /a", "404").Inc()
	reqs.With("GET /a", "200").Add(3)
	h := lat.With("GET /a")
	for _, v := range []float64{0.25, 0.5, 0.75, 20} {
		h.Observe(v)
	}
	var want strings.Builder
	want.WriteString(`# HELP logins_total Successful logins.
# TYPE logins_total counter
logins_total 0
# HELP http_requests_total HTTP requests by route and "code".\nA second line with a \\ backslash.
# TYPE http_requests_total counter
http_requests_total{route="GET /a",code="200"} 3
http_requests_total{route="GET /a",code="404"} 1
http_requests_total{route="a\"b\\c\nd",code="500"} 1
# HELP errors_total Errors by kind.
# TYPE errors_total counter
errors_total{kind="a"} 0
errors_total{kind="b"} 0
# HELP http_request_duration_seconds Request latency.
# TYPE http_request_duration_seconds histogram
`)
	cum := map[string]int{"0.25": 1, "0.5": 2, "1": 3, "2.5": 3, "5": 3, "10": 3, "+Inf": 4}
	for _, le := range []string{"0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"} {
		fmt.Fprintf(&want, "http_request_duration_seconds_bucket{route=\"GET /a\",le=\"%s\"} %d\n", le, cum[le])
	}
	want.WriteString(`http_request_duration_seconds_sum{route="GET /a"} 21.5
http_request_duration_seconds_count{route="GET /a"} 4
# HELP queue_depth Items waiting.
# TYPE queue_depth gauge
queue_depth 2.5
`)
	if got := scrape(r); got != want.String() {
		t.Fatalf("GET /metrics served:\n%s\nwant:\n%s", got, want.String())
	}
}

// scrape is the body GET /metrics is served.
func scrape(r *Registry) string {
	w := httptest.NewRecorder()
	r.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	return w.Body.String()
}

// NaN counts in +Inf only; the handler serves the text with its type.
func TestHistogramNaNAndHandler(t *testing.T) {
	r := NewRegistry()
	h := r.HistogramVec("h_seconds", "H.", "x").With("y")
	h.Observe(math.NaN())
	if h.counts[len(h.counts)-1].Load() != 1 || h.counts[0].Load() != 0 {
		t.Fatal("NaN did not land in +Inf alone")
	}
	w := httptest.NewRecorder()
	r.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	if w.Code != 200 || w.Header().Get("Content-Type") != "text/plain; version=0.0.4; charset=utf-8" || !strings.Contains(w.Body.String(), `h_seconds_count{x="y"} 1`) {
		t.Fatalf("handler: %d %q %q", w.Code, w.Header().Get("Content-Type"), w.Body.String())
	}
}

// validMetricName: [a-zA-Z_:][a-zA-Z0-9_:]* (text format 0.0.4).
func validMetricName(s string) bool {
	for i, c := range s {
		if !(c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9') {
			return false
		}
	}
	return s != ""
}

var hostileValues = []string{
	"",
	`"`,
	`\`,
	"\n",
	`\n`,
	`\"`,
	`a"},x="y`,
	"line1\nline2\r\n",
	"tab\there",
	"ünïcödé ✓",
	"\xff\xfe invalid UTF-8",
	"# HELP fake",
	"} 1\nfake_total 2",
}

func TestParseBack(t *testing.T) {
	r := NewRegistry()
	r.Counter("plain_total", "Plain counter with \\ and \n in its help.")
	vec := r.CounterVecN("hostile_total", "Label values that need escaping.", []string{"value", "index"})
	hist := r.HistogramVec("latency_seconds", "Latency.", "value")
	r.GaugeFunc("weird_gauge", "A gauge at +Inf.", func() float64 { return math.Inf(1) })
	r.GaugeFunc("nan_gauge", "A gauge at NaN.", func() float64 { return math.NaN() })
	r.AddGoRuntime()
	for i, v := range hostileValues {
		vec.With(v, strconv.Itoa(i)).Add(uint64(i))
		hist.With(v).Observe(float64(i) / 10)
	}

	samples := parseText(t, scrape(r))

	// Every hostile value comes back as it went in, or with invalid UTF-8
	// replaced.
	got := make(map[string]string) // index label -> value label
	for _, s := range samples {
		if s.name == "hostile_total" {
			got[s.labels["index"]] = s.labels["value"]
		}
	}
	for i, v := range hostileValues {
		want := strings.ToValidUTF8(v, "\uFFFD")
		if g, ok := got[strconv.Itoa(i)]; !ok || g != want {
			t.Errorf("label value %q read back as %q (present %v); want %q", v, g, ok, want)
		}
	}
	wantFamilies := []string{"plain_total", "hostile_total", "latency_seconds", "weird_gauge", "nan_gauge",
		"go_goroutines", "go_memstats_heap_alloc_bytes", "process_start_time_seconds"}
	seen := make(map[string]bool)
	for _, s := range samples {
		seen[s.family] = true
	}
	for _, f := range wantFamilies {
		if !seen[f] {
			t.Errorf("no samples for metric %s", f)
		}
	}
	if got, want := len(samples), 1+len(hostileValues)*(1+len(DefaultBuckets)+3)+2+3; got != want {
		t.Errorf("parsed %d samples; want %d", got, want)
	}
}

// FuzzLabelValue checks that any label value survives GET /metrics and
// parseText, with invalid UTF-8 replaced.
func FuzzLabelValue(f *testing.F) {
	for _, v := range hostileValues {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v string) {
		r := NewRegistry()
		r.CounterVec("fuzz_total", "Fuzz.", "v").With(v).Inc()
		samples := parseText(t, scrape(r))
		if len(samples) != 1 {
			t.Fatalf("label value %q: parsed %d samples; want 1", v, len(samples))
		}
		if got, want := samples[0].labels["v"], strings.ToValidUTF8(v, "\uFFFD"); got != want {
			t.Fatalf("label value %q read back as %q; want %q", v, got, want)
		}
	})
}

func TestConcurrentUpdates(t *testing.T) {
	const (
		goroutines = 8
		perG       = 10_000
	)
	r := NewRegistry()
	c := r.Counter("c_total", "C.")
	vec := r.CounterVec("v_total", "V.", "g")
	hist := r.HistogramVec("h_seconds", "H.", "g")
	names := []string{"shared", "g0", "g1", "g2", "g3", "g4", "g5", "g6", "g7"}

	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for range perG {
				c.Inc()
				// Every goroutine races to create "shared" and each
				// creates its own series too.
				vec.With("shared").Inc()
				vec.With(names[1+g]).Add(2)
				hist.With("shared").Observe(0.5)
			}
		})
	}
	// Scrapes run during the updates.
	wg.Go(func() {
		for range 20 {
			scrape(r)
		}
	})
	wg.Wait()

	if got, want := c.Value(), uint64(goroutines*perG); got != want {
		t.Errorf("counter = %d; want %d", got, want)
	}
	if got, want := vec.With("shared").Value(), uint64(goroutines*perG); got != want {
		t.Errorf(`vec.With("shared") = %d; want %d`, got, want)
	}
	for g := range goroutines {
		if got, want := vec.With(names[1+g]).Value(), uint64(2*perG); got != want {
			t.Errorf("vec.With(%q) = %d; want %d", names[1+g], got, want)
		}
	}
	h := hist.With("shared")
	if got, want := h.counts[8].Load(), uint64(goroutines*perG); got != want { // le=0.5
		t.Errorf("histogram le=0.5 bucket = %d; want %d", got, want)
	}
	// 0.5 is exact in binary and so is every partial sum here, so a lost
	// CompareAndSwap update would show.
	if got, want := math.Float64frombits(h.sumBits.Load()), 0.5*goroutines*perG; got != want {
		t.Errorf("histogram sum = %v; want %v", got, want)
	}
}

func TestHotPathNoAllocs(t *testing.T) {
	r := NewRegistry()
	c := r.Counter("c_total", "C.")
	vec := r.CounterVecN("requests_total", "R.", []string{"route", "code", "method"})
	hist := r.HistogramVec("duration_seconds", "D.", "route")

	// Values that are not constants, as a handler would have.
	route, code := strings.Repeat("x", 20), strconv.Itoa(200)
	vec.With(route, code, "POST").Inc()
	hist.With(route).Observe(0.1)

	tests := []struct {
		name string
		f    func()
	}{
		{"Counter.Inc", func() { c.Inc() }},
		{"CounterVec.With.Inc", func() { vec.With(route, code, "POST").Inc() }},
		{"HistogramVec.With.Observe", func() { hist.With(route).Observe(0.042) }},
	}
	for _, tt := range tests {
		if n := testing.AllocsPerRun(1000, tt.f); n != 0 {
			t.Errorf("%s: %v allocations per call; want 0", tt.name, n)
		}
	}
}

// A sample is one parsed sample line.
type parsed struct {
	family string // the metric the sample belongs to
	name   string
	labels map[string]string
	value  float64
}

// parseText parses text in the Prometheus text format 0.0.4, strictly enough
// to catch mistakes in this package's output, and fails t on the first
// problem. It checks that every metric has a HELP line followed by a TYPE
// line before its samples, that each sample belongs to the metric above it,
// and that every sample line reads name{labels} value.
func parseText(t testing.TB, text string) []parsed {
	t.Helper()
	if text != "" && !strings.HasSuffix(text, "\n") {
		t.Fatalf("output does not end with a newline: %q", text)
	}
	var (
		samples  []parsed
		families = make(map[string]bool)
		family   string // set by a TYPE line
		typ      string
		helpFor  string // set by a HELP line, cleared by TYPE
	)
	for n, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("line %d %q: %s", n+1, line, fmt.Sprintf(format, args...))
		}
		switch {
		case strings.HasPrefix(line, "# HELP "):
			name, help, ok := strings.Cut(strings.TrimPrefix(line, "# HELP "), " ")
			if !ok || !validMetricName(name) {
				fail("malformed HELP")
			}
			if families[name] {
				fail("second HELP for %s", name)
			}
			if _, err := unescape(help, false); err != nil {
				fail("HELP text: %v", err)
			}
			families[name] = true
			helpFor, family = name, ""
		case strings.HasPrefix(line, "# TYPE "):
			name, kind, ok := strings.Cut(strings.TrimPrefix(line, "# TYPE "), " ")
			if !ok || name != helpFor {
				fail("TYPE not right after the HELP of the same metric")
			}
			if kind != "counter" && kind != "gauge" && kind != "histogram" {
				fail("unknown type %q", kind)
			}
			family, typ, helpFor = name, kind, ""
		case strings.HasPrefix(line, "#"):
			fail("unexpected comment")
		default:
			if family == "" {
				fail("sample before HELP and TYPE")
			}
			s := parseSample(t, line, fail)
			s.family = family
			ok := s.name == family
			if typ == "histogram" {
				_, hasLE := s.labels["le"]
				ok = (s.name == family+"_bucket" && hasLE) ||
					((s.name == family+"_sum" || s.name == family+"_count") && !hasLE)
			}
			if !ok {
				fail("sample %s does not belong to %s %s", s.name, typ, family)
			}
			samples = append(samples, s)
		}
	}
	if helpFor != "" {
		t.Fatalf("HELP for %s without TYPE", helpFor)
	}
	return samples
}

// parseSample parses `name{label="value",...} value`, calling fail on any
// deviation.
func parseSample(t testing.TB, line string, fail func(string, ...any)) parsed {
	t.Helper()
	s := parsed{labels: make(map[string]string)}
	i := 0
	for i < len(line) && line[i] != '{' && line[i] != ' ' {
		i++
	}
	s.name, line = line[:i], line[i:]
	if !validMetricName(s.name) {
		fail("bad metric name %q", s.name)
	}
	if strings.HasPrefix(line, "{") {
		line = line[1:]
		for {
			name, rest, ok := strings.Cut(line, `="`)
			if !ok || !validMetricName(name) {
				fail("bad label name in %q", line)
			}
			if _, dup := s.labels[name]; dup {
				fail("label %s repeated", name)
			}
			// The value runs to the first double quote not escaped.
			end := -1
			for j := 0; j < len(rest); j++ {
				if rest[j] == '\\' {
					j++
					continue
				}
				if rest[j] == '"' {
					end = j
					break
				}
			}
			if end < 0 {
				fail("unterminated label value")
			}
			v, err := unescape(rest[:end], true)
			if err != nil {
				fail("label %s: %v", name, err)
			}
			s.labels[name] = v
			line = rest[end+1:]
			if strings.HasPrefix(line, ",") {
				line = line[1:]
				continue
			}
			if !strings.HasPrefix(line, "}") {
				fail("expected , or } after label %s", name)
			}
			line = line[1:]
			break
		}
	}
	if !strings.HasPrefix(line, " ") {
		fail("expected a space before the value")
	}
	v, err := strconv.ParseFloat(line[1:], 64)
	if err != nil {
		fail("value: %v", err)
	}
	s.value = v
	return s
}

// unescape undoes the text format's escaping: \\ and \n, and \" too if quote
// is set. Any other backslash sequence, a raw newline, a raw double quote in
// a label value or invalid UTF-8 is an error.
func unescape(s string, quote bool) (string, error) {
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("invalid UTF-8 in %q", s)
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\n':
			return "", fmt.Errorf("raw newline in %q", s)
		case c == '"' && quote:
			return "", fmt.Errorf("unescaped double quote in %q", s)
		case c != '\\':
			b.WriteByte(c)
			continue
		}
		i++
		if i == len(s) {
			return "", fmt.Errorf("trailing backslash in %q", s)
		}
		switch e := s[i]; {
		case e == '\\':
			b.WriteByte('\\')
		case e == 'n':
			b.WriteByte('\n')
		case e == '"' && quote:
			b.WriteByte('"')
		default:
			return "", fmt.Errorf("unknown escape \\%c in %q", e, s)
		}
	}
	return b.String(), nil
}

func BenchmarkCounterVecInc(b *testing.B) {
	r := NewRegistry()
	vec := r.CounterVecN("http_requests_total", "Requests.", []string{"route", "code"})
	route, code := "POST /oauth2/token", "200"
	vec.With(route, code)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			vec.With(route, code).Inc()
		}
	})
}

func BenchmarkHistogramObserve(b *testing.B) {
	r := NewRegistry()
	hist := r.HistogramVec("http_request_duration_seconds", "Latency.", "route")
	route := "POST /oauth2/token"
	hist.With(route)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		v := 0.0
		for pb.Next() {
			v += 0.0001
			if v > 12 {
				v = 0
			}
			hist.With(route).Observe(v)
		}
	})
}

func BenchmarkText(b *testing.B) {
	// 50 series: 3 runtime gauges, 7 counters, 30 counter series and 10
	// histogram series.
	r := NewRegistry()
	r.AddGoRuntime()
	for i := range 7 {
		r.Counter(fmt.Sprintf("events_%d_total", i), "Events.").Add(uint64(i))
	}
	reqs := r.CounterVecN("http_requests_total", "Requests.", []string{"route", "code"})
	hist := r.HistogramVec("http_request_duration_seconds", "Latency.", "route")
	for i := range 10 {
		route := fmt.Sprintf("GET /api/v1/resource%d", i)
		for _, code := range []string{"200", "400", "500"} {
			reqs.With(route, code).Add(uint64(i))
		}
		hist.With(route).Observe(float64(i) / 100)
	}
	b.SetBytes(int64(len(r.text())))
	b.ReportAllocs()
	for b.Loop() {
		r.text()
	}
}
