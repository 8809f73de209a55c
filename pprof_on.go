//go:build pprof

package main

import (
	"cmp"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
)

// startProfiler serves net/http/pprof on PPROF_ADDR (default
// 127.0.0.1:6060). It exists only in binaries built with -tags pprof, for
// the load harness; release builds do not contain it.
func startProfiler(log *slog.Logger) {
	addr := cmp.Or(os.Getenv("PPROF_ADDR"), "127.0.0.1:6060")
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.Handle("/debug/pprof/allocs", pprof.Handler("allocs"))
	mux.Handle("/debug/pprof/heap", pprof.Handler("heap"))
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	log.Warn("pprof build: profiler listening", "addr", addr)
	go http.ListenAndServe(addr, mux)
}
