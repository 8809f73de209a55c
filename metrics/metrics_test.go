package metrics

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

func TestWriteTextExact(t *testing.T) {
	r := NewRegistry()
	r.Counter("logins_total", "Successful logins.")
	reqs := r.CounterVec("http_requests_total",
		"HTTP requests by route and \"code\".\nA second line with a \\ backslash.", "route", "code")
	r.CounterVec("errors_total", "Errors by kind; none yet.", "kind")
	lat := r.HistogramVec("http_request_duration_seconds", "Request latency.", []float64{0.25, 0.5, 1}, "route")
	r.HistogramVec("empty_seconds", "A histogram without labels.", []float64{1})
	r.GaugeFunc("queue_depth", "Items waiting.", func() float64 { return 2.5 })

	// Created out of order, to check that series are sorted.
	reqs.With(`a"b\c`+"\nd", "500").Inc()
	reqs.With("GET /a", "404").Inc()
	reqs.With("GET /a", "200").Add(3)

	h := lat.With("GET /a")
	h.Observe(0.25) // equal to a bound: counts in le="0.25"
	h.Observe(0.5)  // likewise in le="0.5"
	h.Observe(0.75)
	h.Observe(2)
	lat.With("B").Observe(0.125)

	want := `# HELP logins_total Successful logins.
# TYPE logins_total counter
logins_total 0
# HELP http_requests_total HTTP requests by route and "code".\nA second line with a \\ backslash.
# TYPE http_requests_total counter
http_requests_total{route="GET /a",code="200"} 3
http_requests_total{route="GET /a",code="404"} 1
http_requests_total{route="a\"b\\c\nd",code="500"} 1
# HELP errors_total Errors by kind; none yet.
# TYPE errors_total counter
# HELP http_request_duration_seconds Request latency.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{route="B",le="0.25"} 1
http_request_duration_seconds_bucket{route="B",le="0.5"} 1
http_request_duration_seconds_bucket{route="B",le="1"} 1
http_request_duration_seconds_bucket{route="B",le="+Inf"} 1
http_request_duration_seconds_sum{route="B"} 0.125
http_request_duration_seconds_count{route="B"} 1
http_request_duration_seconds_bucket{route="GET /a",le="0.25"} 1
http_request_duration_seconds_bucket{route="GET /a",le="0.5"} 2
http_request_duration_seconds_bucket{route="GET /a",le="1"} 3
http_request_duration_seconds_bucket{route="GET /a",le="+Inf"} 4
http_request_duration_seconds_sum{route="GET /a"} 3.5
http_request_duration_seconds_count{route="GET /a"} 4
# HELP empty_seconds A histogram without labels.
# TYPE empty_seconds histogram
empty_seconds_bucket{le="1"} 0
empty_seconds_bucket{le="+Inf"} 0
empty_seconds_sum 0
empty_seconds_count 0
# HELP queue_depth Items waiting.
# TYPE queue_depth gauge
queue_depth 2.5
`
	var buf bytes.Buffer
	if err := r.WriteText(&buf); err != nil {
		t.Fatalf("WriteText: %v", err)
	}
	if got := buf.String(); got != want {
		t.Fatalf("WriteText wrote:\n%s\nwant:\n%s", got, want)
	}
}

func TestCounter(t *testing.T) {
	r := NewRegistry()
	c := r.Counter("c_total", "A counter.")
	if got := c.Value(); got != 0 {
		t.Fatalf("new counter Value() = %d; want 0", got)
	}
	c.Inc()
	c.Add(41)
	if got := c.Value(); got != 42 {
		t.Fatalf("Value() after Inc and Add(41) = %d; want 42", got)
	}
	v := r.CounterVec("v_total", "A vec.", "a", "b")
	if v.With("x", "y") != v.With("x", "y") {
		t.Fatal(`With("x", "y") returned two different counters`)
	}
	if v.With("x", "y") == v.With("y", "x") {
		t.Fatal(`With("x", "y") and With("y", "x") returned the same counter`)
	}
}

func TestFloatFormat(t *testing.T) {
	tests := []struct {
		in   float64
		want string
	}{
		{0, "0"},
		{1, "1"},
		{0.001, "0.001"},
		{0.0025, "0.0025"},
		{1e-7, "1e-07"},
		{12345678901, "1.2345678901e+10"},
		{math.Inf(1), "+Inf"},
		{math.Inf(-1), "-Inf"},
		{math.NaN(), "NaN"},
	}
	for _, tt := range tests {
		if got := string(appendFloat(nil, tt.in)); got != tt.want {
			t.Errorf("appendFloat(%v) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

func TestHistogramBuckets(t *testing.T) {
	r := NewRegistry()
	h := r.HistogramVec("h_seconds", "H.", []float64{1, 2}).With()
	tests := []struct {
		v      float64
		bucket int // index into counts; 2 is +Inf
	}{
		{math.Inf(-1), 0},
		{-1, 0},
		{0, 0},
		{1, 0},
		{math.Nextafter(1, 2), 1},
		{2, 1},
		{math.Nextafter(2, 3), 2},
		{math.Inf(1), 2},
		{math.NaN(), 2},
	}
	for _, tt := range tests {
		before := h.counts[tt.bucket].Load()
		h.Observe(tt.v)
		if got := h.counts[tt.bucket].Load(); got != before+1 {
			t.Errorf("Observe(%v): bucket %d went from %d to %d; want +1", tt.v, tt.bucket, before, got)
		}
	}
}

func TestDefaultBuckets(t *testing.T) {
	b := DefaultBuckets()
	if len(b) == 0 || b[0] != 0.001 || b[len(b)-1] != 10 {
		t.Fatalf("DefaultBuckets() = %v; want 0.001 up to 10", b)
	}
	b[0] = 99
	if got := DefaultBuckets()[0]; got != 0.001 {
		t.Fatalf("DefaultBuckets()[0] = %v after the caller changed its copy; want 0.001", got)
	}
	// The registry must accept them.
	NewRegistry().HistogramVec("d_seconds", "D.", DefaultBuckets())
}

func TestRegistrationPanics(t *testing.T) {
	tests := []struct {
		name string
		f    func(r *Registry)
	}{
		{"duplicate counter", func(r *Registry) {
			r.Counter("a_total", "A.")
			r.Counter("a_total", "A.")
		}},
		{"counter clashes with gauge", func(r *Registry) {
			r.GaugeFunc("a", "A.", func() float64 { return 0 })
			r.CounterVec("a", "A.", "x")
		}},
		{"counter clashes with histogram _count", func(r *Registry) {
			r.HistogramVec("req_seconds", "R.", nil)
			r.Counter("req_seconds_count", "R.")
		}},
		{"histogram clashes with counter", func(r *Registry) {
			r.Counter("req_seconds_sum", "R.")
			r.HistogramVec("req_seconds", "R.", nil)
		}},
		{"empty name", func(r *Registry) { r.Counter("", "A.") }},
		{"name starts with digit", func(r *Registry) { r.Counter("1a", "A.") }},
		{"name with dash", func(r *Registry) { r.Counter("a-b", "A.") }},
		{"name with space", func(r *Registry) { r.Counter("a b", "A.") }},
		{"empty help", func(r *Registry) { r.Counter("a", "") }},
		{"label with colon", func(r *Registry) { r.CounterVec("a", "A.", "x:y") }},
		{"reserved label", func(r *Registry) { r.CounterVec("a", "A.", "__name") }},
		{"empty label", func(r *Registry) { r.CounterVec("a", "A.", "") }},
		{"repeated label", func(r *Registry) { r.CounterVec("a", "A.", "x", "y", "x") }},
		{"five labels", func(r *Registry) { r.CounterVec("a", "A.", "a", "b", "c", "d", "e") }},
		{"le label on histogram", func(r *Registry) { r.HistogramVec("a", "A.", nil, "le") }},
		{"unsorted buckets", func(r *Registry) { r.HistogramVec("a", "A.", []float64{1, 0.5}) }},
		{"repeated bucket", func(r *Registry) { r.HistogramVec("a", "A.", []float64{1, 1}) }},
		{"NaN bucket", func(r *Registry) { r.HistogramVec("a", "A.", []float64{math.NaN()}) }},
		{"+Inf bucket", func(r *Registry) { r.HistogramVec("a", "A.", []float64{1, math.Inf(1)}) }},
		{"nil gauge func", func(r *Registry) { r.GaugeFunc("a", "A.", nil) }},
		{"With too few values", func(r *Registry) { r.CounterVec("a", "A.", "x", "y").With("1") }},
		{"With too many values", func(r *Registry) { r.HistogramVec("a", "A.", nil, "x").With("1", "2") }},
		{"With values on a counter without labels", func(r *Registry) { r.CounterVec("a", "A.").With("1") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				v := recover()
				if v == nil {
					t.Fatal("did not panic")
				}
				if msg, ok := v.(string); !ok || !strings.HasPrefix(msg, "metrics: ") {
					t.Fatalf("panic value %#v; want a string starting with \"metrics: \"", v)
				}
			}()
			tt.f(NewRegistry())
		})
	}
}

func TestConcurrentUpdates(t *testing.T) {
	const (
		goroutines = 8
		perG       = 10_000
	)
	r := NewRegistry()
	c := r.Counter("c_total", "C.")
	vec := r.CounterVec("v_total", "V.", "g")
	hist := r.HistogramVec("h_seconds", "H.", []float64{0.25, 1}, "g")
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
			if err := r.WriteText(io.Discard); err != nil {
				t.Errorf("WriteText: %v", err)
			}
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
	if got, want := h.counts[1].Load(), uint64(goroutines*perG); got != want {
		t.Errorf("histogram le=1 bucket = %d; want %d", got, want)
	}
	// 0.5 is exact in binary and so is every partial sum here, so a lost
	// CompareAndSwap update would show.
	if got, want := math.Float64frombits(h.sumBits.Load()), 0.5*goroutines*perG; got != want {
		t.Errorf("histogram sum = %v; want %v", got, want)
	}
}

func TestHandler(t *testing.T) {
	r := NewRegistry()
	r.Counter("c_total", "C.").Add(7)
	var want bytes.Buffer
	if err := r.WriteText(&want); err != nil {
		t.Fatalf("WriteText: %v", err)
	}
	h := r.Handler()

	tests := []struct {
		method   string
		status   int
		body     string
		ctype    string
		allowHdr string
	}{
		{http.MethodGet, http.StatusOK, want.String(), contentType, ""},
		{http.MethodHead, http.StatusOK, "", contentType, ""},
		{http.MethodPost, http.StatusMethodNotAllowed, "method not allowed\n", "text/plain; charset=utf-8", "GET, HEAD"},
		{http.MethodDelete, http.StatusMethodNotAllowed, "method not allowed\n", "text/plain; charset=utf-8", "GET, HEAD"},
	}
	for _, tt := range tests {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(tt.method, "/metrics", nil))
		if w.Code != tt.status {
			t.Errorf("%s /metrics: status %d; want %d", tt.method, w.Code, tt.status)
		}
		if got := w.Header().Get("Content-Type"); got != tt.ctype {
			t.Errorf("%s /metrics: Content-Type %q; want %q", tt.method, got, tt.ctype)
		}
		if got := w.Header().Get("Allow"); got != tt.allowHdr {
			t.Errorf("%s /metrics: Allow %q; want %q", tt.method, got, tt.allowHdr)
		}
		if got := w.Body.String(); got != tt.body {
			t.Errorf("%s /metrics: body %q; want %q", tt.method, got, tt.body)
		}
	}
	if got, want := contentType, "text/plain; version=0.0.4; charset=utf-8"; got != want {
		t.Errorf("contentType = %q; want %q", got, want)
	}
}

func TestHotPathNoAllocs(t *testing.T) {
	r := NewRegistry()
	c := r.Counter("c_total", "C.")
	vec := r.CounterVec("requests_total", "R.", "route", "code", "method", "grant")
	hist := r.HistogramVec("duration_seconds", "D.", DefaultBuckets(), "route")

	// Values that are not constants, as a handler would have.
	route, code := strings.Repeat("x", 20), strconv.Itoa(200)
	vec.With(route, code, "POST", "authorization_code").Inc()
	hist.With(route).Observe(0.1)

	tests := []struct {
		name string
		f    func()
	}{
		{"Counter.Inc", func() { c.Inc() }},
		{"CounterVec.With.Inc", func() { vec.With(route, code, "POST", "authorization_code").Inc() }},
		{"HistogramVec.With.Observe", func() { hist.With(route).Observe(0.042) }},
	}
	for _, tt := range tests {
		if n := testing.AllocsPerRun(1000, tt.f); n != 0 {
			t.Errorf("%s: %v allocations per call; want 0", tt.name, n)
		}
	}
}

func TestAddGoRuntime(t *testing.T) {
	r := NewRegistry()
	before := time.Now()
	r.AddGoRuntime()
	after := time.Now()

	var buf bytes.Buffer
	if err := r.WriteText(&buf); err != nil {
		t.Fatalf("WriteText: %v", err)
	}
	samples := parseText(t, buf.String())
	values := make(map[string]float64)
	for _, s := range samples {
		values[s.name] = s.value
	}
	if v := values["go_goroutines"]; !(v >= 1) {
		t.Errorf("go_goroutines = %v; want >= 1", v)
	}
	if v := values["go_memstats_heap_alloc_bytes"]; !(v > 0) {
		t.Errorf("go_memstats_heap_alloc_bytes = %v; want > 0", v)
	}
	lo, hi := float64(before.Unix()), float64(after.Unix()+1)
	if v := values["process_start_time_seconds"]; !(v >= lo && v <= hi) {
		t.Errorf("process_start_time_seconds = %v; want between %v and %v", v, lo, hi)
	}
}

// hostileValues are label values that need escaping, or that would break a
// careless writer or parser.
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
	vec := r.CounterVec("hostile_total", "Label values that need escaping.", "value", "index")
	hist := r.HistogramVec("latency_seconds", "Latency.", DefaultBuckets(), "value")
	r.GaugeFunc("weird_gauge", "A gauge at +Inf.", func() float64 { return math.Inf(1) })
	r.GaugeFunc("nan_gauge", "A gauge at NaN.", func() float64 { return math.NaN() })
	r.AddGoRuntime()
	for i, v := range hostileValues {
		vec.With(v, strconv.Itoa(i)).Add(uint64(i))
		hist.With(v).Observe(float64(i) / 10)
	}

	var buf bytes.Buffer
	if err := r.WriteText(&buf); err != nil {
		t.Fatalf("WriteText: %v", err)
	}
	samples := parseText(t, buf.String())

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
	if got, want := len(samples), 1+len(hostileValues)*(1+len(DefaultBuckets())+3)+2+3; got != want {
		t.Errorf("parsed %d samples; want %d", got, want)
	}
}

// FuzzLabelValue checks that any label value survives WriteText and
// parseText, with invalid UTF-8 replaced.
func FuzzLabelValue(f *testing.F) {
	for _, v := range hostileValues {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v string) {
		r := NewRegistry()
		r.CounterVec("fuzz_total", "Fuzz.", "v").With(v).Inc()
		var buf bytes.Buffer
		if err := r.WriteText(&buf); err != nil {
			t.Fatalf("WriteText: %v", err)
		}
		samples := parseText(t, buf.String())
		if len(samples) != 1 {
			t.Fatalf("label value %q: parsed %d samples; want 1", v, len(samples))
		}
		if got, want := samples[0].labels["v"], strings.ToValidUTF8(v, "\uFFFD"); got != want {
			t.Fatalf("label value %q read back as %q; want %q", v, got, want)
		}
	})
}

// A sample is one parsed sample line.
type sample struct {
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
func parseText(t testing.TB, text string) []sample {
	t.Helper()
	if text != "" && !strings.HasSuffix(text, "\n") {
		t.Fatalf("output does not end with a newline: %q", text)
	}
	var (
		samples  []sample
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
			if !ok || !validName(name, true) {
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
func parseSample(t testing.TB, line string, fail func(string, ...any)) sample {
	t.Helper()
	s := sample{labels: make(map[string]string)}
	i := 0
	for i < len(line) && line[i] != '{' && line[i] != ' ' {
		i++
	}
	s.name, line = line[:i], line[i:]
	if !validName(s.name, true) {
		fail("bad metric name %q", s.name)
	}
	if strings.HasPrefix(line, "{") {
		line = line[1:]
		for {
			name, rest, ok := strings.Cut(line, `="`)
			if !ok || !validName(name, false) {
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
	vec := r.CounterVec("http_requests_total", "Requests.", "route", "code")
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
	hist := r.HistogramVec("http_request_duration_seconds", "Latency.", DefaultBuckets(), "route")
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

func BenchmarkWriteText(b *testing.B) {
	// 50 series: 3 runtime gauges, 7 counters, 30 counter series and 10
	// histogram series.
	r := NewRegistry()
	r.AddGoRuntime()
	for i := range 7 {
		r.Counter(fmt.Sprintf("events_%d_total", i), "Events.").Add(uint64(i))
	}
	reqs := r.CounterVec("http_requests_total", "Requests.", "route", "code")
	hist := r.HistogramVec("http_request_duration_seconds", "Latency.", DefaultBuckets(), "route")
	for i := range 10 {
		route := fmt.Sprintf("GET /api/v1/resource%d", i)
		for _, code := range []string{"200", "400", "500"} {
			reqs.With(route, code).Add(uint64(i))
		}
		hist.With(route).Observe(float64(i) / 100)
	}
	var buf bytes.Buffer
	if err := r.WriteText(&buf); err != nil {
		b.Fatalf("WriteText: %v", err)
	}
	b.SetBytes(int64(buf.Len()))
	b.ReportAllocs()
	for b.Loop() {
		if err := r.WriteText(io.Discard); err != nil {
			b.Fatalf("WriteText: %v", err)
		}
	}
}
