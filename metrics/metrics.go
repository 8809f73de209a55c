// Package metrics counts events and times requests, and writes the results in
// the Prometheus text exposition format, version 0.0.4.
//
// A Registry holds every metric; there is no default registry and no package
// state. Metrics are registered once at startup, where mistakes (a duplicate
// or malformed name, bad buckets) panic. Updating a metric (With followed by
// Inc or Observe on a series that already exists) takes no lock for writing
// and does not allocate, so it is cheap enough for every request.
//
// Label values must come from small fixed sets (route patterns, status
// codes, grant types), never from client input: each distinct combination
// is a series held in memory until the process exits.
package metrics

import (
	"fmt"
	"io"
	"math"
	"net/http"
	rtmetrics "runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// maxLabels is the most label names a metric may have. A fixed bound lets a
// series be looked up by an array of label values, which needs no
// allocation.
const maxLabels = 4

// contentType is the media type of the text exposition format, version 0.0.4.
const contentType = "text/plain; version=0.0.4; charset=utf-8"

// labelValues holds the label values of one series, in the order of the
// metric's label names; unused entries are empty.
type labelValues [maxLabels]string

// A metric is anything a Registry can write.
type metric interface {
	// appendText appends the metric's HELP, TYPE and sample lines to b.
	appendText(b []byte) []byte
}

// A Registry holds metrics and writes them in registration order. It is safe
// for concurrent use. The zero value is not usable; call NewRegistry.
type Registry struct {
	mu      sync.Mutex
	names   map[string]bool // every sample name in use, to reject clashes
	metrics []metric        // in registration order
}

// NewRegistry returns an empty Registry.
func NewRegistry() *Registry {
	return &Registry{names: make(map[string]bool)}
}

// register adds m under name, reserving also name+suffix for each suffix,
// so that a histogram's name_count cannot clash with a counter. It panics if
// any of those names is taken.
func (r *Registry) register(m metric, name string, suffixes ...string) {
	names := []string{name}
	for _, s := range suffixes {
		names = append(names, name+s)
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range names {
		if r.names[n] {
			panic(fmt.Sprintf("metrics: %s: name %s already registered", name, n))
		}
	}
	for _, n := range names {
		r.names[n] = true
	}
	r.metrics = append(r.metrics, m)
}

// A Counter is a value that only goes up. It is safe for concurrent use.
type Counter struct {
	v atomic.Uint64
}

// Inc adds one to c.
func (c *Counter) Inc() { c.v.Add(1) }

// Add adds n to c.
func (c *Counter) Add(n uint64) { c.v.Add(n) }

// Value returns the current value of c.
func (c *Counter) Value() uint64 { return c.v.Load() }

// A CounterVec is a counter with labels: one Counter per combination of label
// values.
type CounterVec struct {
	set *seriesSet[Counter]
}

// Counter registers and returns a counter without labels. Its one series is
// written, at 0, from the start. Counter panics if name or help is invalid
// or name is already registered.
func (r *Registry) Counter(name, help string) *Counter {
	return r.CounterVec(name, help).With()
}

// CounterVec registers and returns a counter with the given label names, at
// most 4. A series appears in the output once With has been called for its
// label values; with no labels, the one series is there from the start.
// CounterVec panics if a name is invalid, a label name is
// repeated, there are too many labels, help is empty or name is already
// registered.
func (r *Registry) CounterVec(name, help string, labels ...string) *CounterVec {
	v := &CounterVec{set: newSeriesSet(name, help, labels, func() *Counter { return new(Counter) })}
	r.register(v, name)
	return v
}

// With returns the Counter for the given label values, in the order of the
// label names given to CounterVec, creating it at 0 on first use. With
// panics if the number of values differs from the number of label names.
func (v *CounterVec) With(values ...string) *Counter {
	return v.set.with(values)
}

// appendText appends the counter's HELP, TYPE and sample lines to b.
func (v *CounterVec) appendText(b []byte) []byte {
	s := v.set
	b = appendHeader(b, s.name, s.help, "counter")
	for _, e := range s.sorted() {
		b = append(b, s.name...)
		b = appendLabels(b, s.labels, &e.values, nil)
		b = append(b, ' ')
		b = strconv.AppendUint(b, e.series.Value(), 10)
		b = append(b, '\n')
	}
	return b
}

// A Histogram counts observations in buckets and keeps their sum. It is safe
// for concurrent use.
type Histogram struct {
	// upper holds the buckets' upper bounds, in increasing order, without
	// the implicit +Inf. It is shared by every series of the HistogramVec
	// and never modified.
	upper []float64
	// counts[i] is the number of observations v with
	// upper[i-1] < v <= upper[i]; the last element counts those above
	// every bound. Counts are kept per bucket, not cumulatively, so that
	// Observe updates one counter.
	counts []atomic.Uint64
	// sumBits holds math.Float64bits of the sum of observations.
	sumBits atomic.Uint64
}

// Observe records one observation, such as a request's duration in seconds.
// A value equal to a bucket's upper bound counts in that bucket; NaN counts
// only in the +Inf bucket.
func (h *Histogram) Observe(seconds float64) {
	i := 0
	// !(v <= bound) rather than v > bound, so that NaN runs to the end.
	for i < len(h.upper) && !(seconds <= h.upper[i]) {
		i++
	}
	h.counts[i].Add(1)
	for {
		old := h.sumBits.Load()
		sum := math.Float64bits(math.Float64frombits(old) + seconds)
		if h.sumBits.CompareAndSwap(old, sum) {
			return
		}
	}
}

// A HistogramVec is a histogram with labels: one Histogram per combination of
// label values, all with the same buckets.
type HistogramVec struct {
	set   *seriesSet[Histogram]
	upper []float64
}

// HistogramVec registers and returns a histogram with the given bucket upper
// bounds and label names, at most 4. The bounds must be strictly increasing
// and finite or -Inf; the +Inf bucket is always added. A histogram without
// labels is written, empty, from the start; one with labels gains a series
// on the first With for its label values. HistogramVec panics if a name or
// the buckets are invalid, a label name is repeated or is "le", help is
// empty, or name or one of the names it writes (name_bucket, name_sum,
// name_count) is already registered.
func (r *Registry) HistogramVec(name, help string, buckets []float64, labels ...string) *HistogramVec {
	for i, u := range buckets {
		if math.IsNaN(u) || math.IsInf(u, 1) {
			panic(fmt.Sprintf("metrics: %s: bucket %v not allowed; the +Inf bucket is implicit", name, u))
		}
		if i > 0 && u <= buckets[i-1] {
			panic(fmt.Sprintf("metrics: %s: buckets not strictly increasing at %v", name, u))
		}
	}
	for _, l := range labels {
		if l == "le" {
			panic(fmt.Sprintf("metrics: %s: label name le is reserved for histogram buckets", name))
		}
	}
	upper := slices.Clone(buckets)
	newHistogram := func() *Histogram {
		return &Histogram{upper: upper, counts: make([]atomic.Uint64, len(upper)+1)}
	}
	v := &HistogramVec{set: newSeriesSet(name, help, labels, newHistogram), upper: upper}
	r.register(v, name, "_bucket", "_sum", "_count")
	return v
}

// With returns the Histogram for the given label values, in the order of the
// label names given to HistogramVec, creating it empty on first use. With
// panics if the number of values differs from the number of label names.
func (v *HistogramVec) With(values ...string) *Histogram {
	return v.set.with(values)
}

// appendText appends the histogram's HELP and TYPE lines to b, then for each
// series its cumulative buckets, sum and count.
func (v *HistogramVec) appendText(b []byte) []byte {
	s := v.set
	b = appendHeader(b, s.name, s.help, "histogram")
	var le []byte
	for _, e := range s.sorted() {
		h := e.series
		// Read each bucket once and accumulate, so the cumulative counts
		// never decrease and _count equals the +Inf bucket even while
		// other goroutines observe. The sum is read separately and may
		// include an observation the counts do not, or the reverse.
		var cumulative uint64
		for i := range h.counts {
			cumulative += h.counts[i].Load()
			if i < len(v.upper) {
				le = strconv.AppendFloat(le[:0], v.upper[i], 'g', -1, 64)
			} else {
				le = append(le[:0], "+Inf"...)
			}
			b = append(b, s.name...)
			b = append(b, "_bucket"...)
			b = appendLabels(b, s.labels, &e.values, le)
			b = append(b, ' ')
			b = strconv.AppendUint(b, cumulative, 10)
			b = append(b, '\n')
		}
		b = append(b, s.name...)
		b = append(b, "_sum"...)
		b = appendLabels(b, s.labels, &e.values, nil)
		b = append(b, ' ')
		b = appendFloat(b, math.Float64frombits(h.sumBits.Load()))
		b = append(b, '\n')
		b = append(b, s.name...)
		b = append(b, "_count"...)
		b = appendLabels(b, s.labels, &e.values, nil)
		b = append(b, ' ')
		b = strconv.AppendUint(b, cumulative, 10)
		b = append(b, '\n')
	}
	return b
}

// DefaultBuckets returns bucket upper bounds, in seconds, suited to HTTP
// request latency: from 1ms to 10s. Each call returns a new slice.
func DefaultBuckets() []float64 {
	return []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
}

// gaugeFunc is a gauge whose value is read by calling f at each write.
type gaugeFunc struct {
	name, help string
	f          func() float64
}

// GaugeFunc registers a gauge without labels whose value is f(), called each
// time the registry is written. f must be safe for concurrent use. GaugeFunc
// panics if name or help is invalid, f is nil or name is already registered.
func (r *Registry) GaugeFunc(name, help string, f func() float64) {
	checkNames(name, help, nil)
	if f == nil {
		panic(fmt.Sprintf("metrics: %s: nil function", name))
	}
	r.register(&gaugeFunc{name: name, help: help, f: f}, name)
}

// appendText calls g.f and appends the gauge's HELP, TYPE and sample lines
// to b.
func (g *gaugeFunc) appendText(b []byte) []byte {
	b = appendHeader(b, g.name, g.help, "gauge")
	b = append(b, g.name...)
	b = append(b, ' ')
	b = appendFloat(b, g.f())
	b = append(b, '\n')
	return b
}

// AddGoRuntime registers three gauges about the running process:
// go_goroutines, go_memstats_heap_alloc_bytes and process_start_time_seconds.
// The first two are read with runtime/metrics, which, unlike
// runtime.ReadMemStats, does not stop the world. The start time is the time
// AddGoRuntime is called, which for a server that registers its metrics at
// startup is within moments of the process start.
func (r *Registry) AddGoRuntime() {
	start := time.Now()
	r.GaugeFunc("go_goroutines", "Number of goroutines that currently exist.", func() float64 {
		return readRuntimeMetric("/sched/goroutines:goroutines")
	})
	r.GaugeFunc("go_memstats_heap_alloc_bytes", "Number of heap bytes allocated and still in use.", func() float64 {
		return readRuntimeMetric("/memory/classes/heap/objects:bytes")
	})
	r.GaugeFunc("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", func() float64 {
		return float64(start.UnixNano()) / 1e9
	})
}

// readRuntimeMetric returns the value of the runtime/metrics metric name, or
// NaN if this Go runtime does not provide it.
func readRuntimeMetric(name string) float64 {
	s := []rtmetrics.Sample{{Name: name}}
	rtmetrics.Read(s)
	switch s[0].Value.Kind() {
	case rtmetrics.KindUint64:
		return float64(s[0].Value.Uint64())
	case rtmetrics.KindFloat64:
		return s[0].Value.Float64()
	default:
		return math.NaN()
	}
}

// WriteText writes every metric to w in the Prometheus text format 0.0.4:
// metrics in registration order, the series of each sorted by label values.
// It returns the error from w, if any. The text is built in memory and
// written with a single call to w.Write.
func (r *Registry) WriteText(w io.Writer) error {
	_, err := w.Write(r.appendText(nil))
	return err
}

// appendText appends every metric to b.
func (r *Registry) appendText(b []byte) []byte {
	r.mu.Lock()
	ms := slices.Clone(r.metrics)
	r.mu.Unlock()
	for _, m := range ms {
		b = m.appendText(b)
	}
	return b
}

// Handler returns an http.Handler serving the registry's metrics to GET and
// HEAD requests and answering 405 to any other method.
func (r *Registry) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		body := r.appendText(nil)
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		if req.Method == http.MethodGet {
			// An error here means the client went away; there is no
			// one left to tell.
			_, _ = w.Write(body)
		}
	})
}

// A seriesSet holds the series of one metric, each of type T, keyed by
// label values.
type seriesSet[T any] struct {
	name   string
	help   string
	labels []string
	// newSeries returns a new, zero series.
	newSeries func() *T

	mu     sync.RWMutex
	series map[labelValues]*T
}

// newSeriesSet checks name, help and labels and returns an empty seriesSet,
// or one holding its only series if there are no labels.
func newSeriesSet[T any](name, help string, labels []string, newSeries func() *T) *seriesSet[T] {
	checkNames(name, help, labels)
	s := &seriesSet[T]{
		name:      name,
		help:      help,
		labels:    slices.Clone(labels),
		newSeries: newSeries,
		series:    make(map[labelValues]*T),
	}
	if len(labels) == 0 {
		s.series[labelValues{}] = newSeries()
	}
	return s
}

// with returns the series for values, creating it on first use. The common
// case, a series that exists, takes only the read lock and does not
// allocate.
func (s *seriesSet[T]) with(values []string) *T {
	if len(values) != len(s.labels) {
		panic(fmt.Sprintf("metrics: %s: With got %d label values, want %d (%s)",
			s.name, len(values), len(s.labels), strings.Join(s.labels, ", ")))
	}
	var key labelValues
	copy(key[:], values)

	s.mu.RLock()
	series := s.series[key]
	s.mu.RUnlock()
	if series != nil {
		return series
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if series := s.series[key]; series != nil {
		return series // created by another goroutine meanwhile
	}
	// Copy the values, so the map does not keep alive a larger string a
	// value was sliced from.
	for i := range key {
		key[i] = strings.Clone(key[i])
	}
	series = s.newSeries()
	s.series[key] = series
	return series
}

// A seriesEntry is one series with its label values.
type seriesEntry[T any] struct {
	values labelValues
	series *T
}

// sorted returns every series of s, ordered by label values.
func (s *seriesSet[T]) sorted() []seriesEntry[T] {
	s.mu.RLock()
	entries := make([]seriesEntry[T], 0, len(s.series))
	for k, v := range s.series {
		entries = append(entries, seriesEntry[T]{values: k, series: v})
	}
	s.mu.RUnlock()
	slices.SortFunc(entries, func(a, b seriesEntry[T]) int {
		for i := range a.values {
			if c := strings.Compare(a.values[i], b.values[i]); c != 0 {
				return c
			}
		}
		return 0
	})
	return entries
}

// checkNames panics unless name is a valid metric name, help is not empty
// and labels are at most maxLabels distinct valid label names.
func checkNames(name, help string, labels []string) {
	if !validName(name, true) {
		panic(fmt.Sprintf("metrics: invalid metric name %q", name))
	}
	if help == "" {
		panic(fmt.Sprintf("metrics: %s: empty help", name))
	}
	if len(labels) > maxLabels {
		panic(fmt.Sprintf("metrics: %s: %d labels, at most %d allowed", name, len(labels), maxLabels))
	}
	for i, l := range labels {
		if !validName(l, false) || strings.HasPrefix(l, "__") {
			panic(fmt.Sprintf("metrics: %s: invalid label name %q", name, l))
		}
		if slices.Contains(labels[:i], l) {
			panic(fmt.Sprintf("metrics: %s: label name %q repeated", name, l))
		}
	}
}

// validName reports whether s matches [a-zA-Z_][a-zA-Z0-9_]*, with ':' also
// allowed anywhere if colon is set (metric names allow it, label names do
// not).
func validName(s string, colon bool) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
		case c == ':' && colon:
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// appendHeader appends the HELP and TYPE lines of a metric.
func appendHeader(b []byte, name, help, typ string) []byte {
	b = append(b, "# HELP "...)
	b = append(b, name...)
	b = append(b, ' ')
	b = appendEscaped(b, help, false)
	b = append(b, "\n# TYPE "...)
	b = append(b, name...)
	b = append(b, ' ')
	b = append(b, typ...)
	b = append(b, '\n')
	return b
}

// appendLabels appends {name="value",...} for the given label names and
// values, followed by le="..." if le is not empty. It appends nothing if
// there are neither labels nor le.
func appendLabels(b []byte, labels []string, values *labelValues, le []byte) []byte {
	if len(labels) == 0 && len(le) == 0 {
		return b
	}
	b = append(b, '{')
	for i, l := range labels {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, l...)
		b = append(b, `="`...)
		b = appendEscaped(b, values[i], true)
		b = append(b, '"')
	}
	if len(le) > 0 {
		if len(labels) > 0 {
			b = append(b, ',')
		}
		b = append(b, `le="`...)
		b = append(b, le...)
		b = append(b, '"')
	}
	b = append(b, '}')
	return b
}

// appendEscaped appends s escaped as the text format requires: backslash and
// newline always, double quote too in label values (quote set). Invalid
// UTF-8, which the format does not allow, is replaced by U+FFFD.
func appendEscaped(b []byte, s string, quote bool) []byte {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			b = append(b, `\\`...)
		case c == '\n':
			b = append(b, `\n`...)
		case c == '"' && quote:
			b = append(b, `\"`...)
		default:
			b = append(b, c)
		}
	}
	return b
}

// appendFloat appends v as the text format expects: the shortest decimal or
// exponent form that reads back exactly, and "+Inf", "-Inf" or "NaN".
func appendFloat(b []byte, v float64) []byte {
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}
