//go:build !pprof

package main

import "log/slog"

// startProfiler does nothing: the profiler is only in -tags pprof builds.
func startProfiler(*slog.Logger) {}
