// Package metrics counts events and times requests for the server's
// /metrics, written by hand in the Prometheus text exposition format 0.0.4.
// It holds what the server uses and nothing more: counters, counters by
// labels, histograms by labels, and gauges read when written.
//
// # Security
//
// Label values come from small fixed sets (route patterns, status codes,
// grant types, reasons), never from client input: each distinct
// combination is a series held until the process exits. They are escaped
// all the same. Updating a series that exists takes a read lock and does
// not allocate, cheap enough for every request; there is no package state.
package metrics

import (
	"maps"
	"math"
	"net/http"
	rtmetrics "runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Registry holds the metrics and writes them in registration order, the
// series of each sorted by label values.
type Registry struct {
	mu      sync.Mutex
	metrics []func(b []byte) []byte // each appends its HELP, TYPE and samples
}

// NewRegistry returns an empty Registry.
func NewRegistry() *Registry { return &Registry{} }

func (r *Registry) add(f func(b []byte) []byte) {
	r.mu.Lock()
	r.metrics = append(r.metrics, f)
	r.mu.Unlock()
}

// Counter is a count that only goes up.
type Counter struct{ v atomic.Uint64 }

// Inc adds one.
func (c *Counter) Inc() { c.v.Add(1) }

// Add adds n.
func (c *Counter) Add(n uint64) { c.v.Add(n) }

// Value returns the count.
func (c *Counter) Value() uint64 { return c.v.Load() }

// Counter registers a counter without labels, written from the start at 0.
func (r *Registry) Counter(name, help string) *Counter {
	c := &Counter{}
	r.add(func(b []byte) []byte {
		b = header(b, name, help, "counter")
		return sample(b, name, nil, nil, float64(c.Value()))
	})
	return c
}

// labels are the values of a series, in the order of its metric's names
// (at most 3), and a histogram bucket's le after them.
type labels [4]string

// series is the set of series of one metric, keyed by label values.
type series[T any] struct {
	mu sync.RWMutex
	m  map[labels]*T
}

func (s *series[T]) with(values []string) *T {
	var k labels
	copy(k[:], values)
	s.mu.RLock()
	v, ok := s.m[k]
	s.mu.RUnlock()
	if ok {
		return v
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok = s.m[k]; !ok {
		v = new(T)
		s.m[k] = v
	}
	return v
}

// each calls f for every series in the order of its label values.
func (s *series[T]) each(f func(k *labels, v *T)) {
	s.mu.RLock()
	keys := slices.AppendSeq(make([]labels, 0, len(s.m)), maps.Keys(s.m))
	s.mu.RUnlock()
	slices.SortFunc(keys, func(a, b labels) int { return slices.Compare(a[:], b[:]) })
	for i := range keys {
		s.mu.RLock()
		v := s.m[keys[i]]
		s.mu.RUnlock()
		f(&keys[i], v)
	}
}

// CounterVec is a counter by labels (at most 3).
type CounterVec struct{ s series[Counter] }

// CounterVec registers a counter with one label name or more; each of
// initial (values of the first label) is written at 0 from the start.
func (r *Registry) CounterVec(name, help string, label string, initial ...string) *CounterVec {
	return r.CounterVecN(name, help, []string{label}, initial...)
}

// CounterVecN is CounterVec with several label names.
func (r *Registry) CounterVecN(name, help string, names []string, initial ...string) *CounterVec {
	v := &CounterVec{series[Counter]{m: map[labels]*Counter{}}}
	for _, x := range initial {
		v.With(x)
	}
	r.add(func(b []byte) []byte {
		b = header(b, name, help, "counter")
		v.s.each(func(k *labels, c *Counter) { b = sample(b, name, names, k, float64(c.Value())) })
		return b
	})
	return v
}

// With returns the counter of the label values, creating it at 0.
func (v *CounterVec) With(values ...string) *Counter { return v.s.with(values) }

// DefaultBuckets are upper bounds, in seconds, suited to HTTP request
// latency: from 1 ms to 10 s (+Inf is implicit).
var DefaultBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Histogram counts observations in DefaultBuckets and keeps their sum.
type Histogram struct {
	counts  [14]atomic.Uint64 // per bucket, not cumulative; the last is +Inf
	sumBits atomic.Uint64     // math.Float64bits of the sum
}

// Observe records one observation (a duration in seconds). A value equal to
// a bound counts in that bucket; NaN counts only in +Inf.
func (h *Histogram) Observe(seconds float64) {
	i := 0
	for i < len(DefaultBuckets) && !(seconds <= DefaultBuckets[i]) { // !(<=): NaN runs to the end
		i++
	}
	h.counts[i].Add(1)
	for {
		old := h.sumBits.Load()
		if h.sumBits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+seconds)) {
			return
		}
	}
}

// HistogramVec is a histogram by labels.
type HistogramVec struct{ s series[Histogram] }

// HistogramVec registers a histogram with DefaultBuckets and label names.
func (r *Registry) HistogramVec(name, help string, names ...string) *HistogramVec {
	v := &HistogramVec{series[Histogram]{m: map[labels]*Histogram{}}}
	withLE := slices.Concat(names, []string{"le"})
	les := make([]string, 0, len(DefaultBuckets)+1) // the buckets' le values, +Inf last
	for _, bound := range DefaultBuckets {
		les = append(les, strconv.FormatFloat(bound, 'g', -1, 64))
	}
	les = append(les, "+Inf")
	bucketName, sumName, countName := name+"_bucket", name+"_sum", name+"_count"
	r.add(func(b []byte) []byte {
		b = header(b, name, help, "histogram")
		v.s.each(func(k *labels, h *Histogram) {
			// Each bucket is read once and accumulated, so the counts never
			// decrease and _count equals +Inf while others observe.
			var n uint64
			for i := range h.counts {
				n += h.counts[i].Load()
				bucket := *k // the series' label values, and le after them
				bucket[len(names)] = les[i]
				b = sample(b, bucketName, withLE, &bucket, float64(n))
			}
			b = sample(b, sumName, names, k, math.Float64frombits(h.sumBits.Load()))
			b = sample(b, countName, names, k, float64(n))
		})
		return b
	})
	return v
}

// With returns the histogram of the label values, creating it empty.
func (v *HistogramVec) With(values ...string) *Histogram { return v.s.with(values) }

// GaugeFunc registers a gauge whose value f returns each time the registry
// is written.
func (r *Registry) GaugeFunc(name, help string, f func() float64) {
	r.add(func(b []byte) []byte { return sample(header(b, name, help, "gauge"), name, nil, nil, f()) })
}

// AddGoRuntime registers go_goroutines and go_memstats_heap_alloc_bytes
// (read with runtime/metrics, which does not stop the world) and
// process_start_time_seconds (the time of this call, at startup).
func (r *Registry) AddGoRuntime() {
	start := float64(time.Now().UnixNano()) / 1e9
	read := func(name string) func() float64 {
		return func() float64 {
			s := []rtmetrics.Sample{{Name: name}}
			rtmetrics.Read(s)
			if s[0].Value.Kind() != rtmetrics.KindUint64 {
				return math.NaN()
			}
			return float64(s[0].Value.Uint64())
		}
	}
	r.GaugeFunc("go_goroutines", "Number of goroutines that currently exist.", read("/sched/goroutines:goroutines"))
	r.GaugeFunc("go_memstats_heap_alloc_bytes", "Number of heap bytes allocated and still in use.", read("/memory/classes/heap/objects:bytes"))
	r.GaugeFunc("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", func() float64 { return start })
}

func (r *Registry) text() []byte {
	r.mu.Lock()
	ms := slices.Clone(r.metrics)
	r.mu.Unlock()
	var b []byte
	for _, m := range ms {
		b = m(b)
	}
	return b
}

// Handler serves the metrics (GET and HEAD: the route table says which).
func (r *Registry) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body := r.text()
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body) // an error means the client went away
	})
}

func header(b []byte, name, help, typ string) []byte {
	b = append(append(append(b, "# HELP "...), name...), ' ')
	b = escape(b, help, helpEscaper)
	return append(append(append(append(b, "\n# TYPE "...), name...), ' '), typ+"\n"...)
}

// sample appends one line: the name, the labels, the value (NaN, +Inf and
// -Inf as FormatFloat spells them, which is the text format's spelling).
func sample(b []byte, name string, names []string, values *labels, v float64) []byte {
	b = append(b, name...)
	for i, n := range names {
		if i == 0 {
			b = append(b, '{')
		} else {
			b = append(b, ',')
		}
		b = escape(append(append(b, n...), `="`...), values[i], labelEscaper)
		b = append(b, '"')
	}
	if len(names) > 0 {
		b = append(b, '}')
	}
	b = append(b, ' ')
	b = strconv.AppendFloat(b, v, 'g', -1, 64)
	return append(b, '\n')
}

// The escapes of text format 0.0.4: backslash and newline in help text,
// and the double quote too in label values. Each replaces single bytes, in
// one pass, and returns a string with nothing to escape as it is.
var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

// escape appends s escaped by r; invalid UTF-8 becomes U+FFFD.
func escape(b []byte, s string, r *strings.Replacer) []byte {
	return append(b, r.Replace(strings.ToValidUTF8(s, "\uFFFD"))...)
}
