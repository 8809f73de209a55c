package httpx

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// LogWriter buffers log output so that a busy server does not make one
// write system call per access log line. It flushes every interval, when
// the buffer fills, and at once after any record at level WARN or above
// (failed logins reach fail2ban without delay). A crash can lose at most one
// interval of INFO lines.
type LogWriter struct {
	mu   sync.Mutex
	w    *bufio.Writer
	done chan struct{}
	wg   sync.WaitGroup
}

// NewLogWriter starts a LogWriter over w flushing every interval.
func NewLogWriter(w io.Writer, size int, interval time.Duration) *LogWriter {
	l := &LogWriter{w: bufio.NewWriterSize(w, size), done: make(chan struct{})}
	l.wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-l.done:
				return
			case <-t.C:
				l.Flush()
			}
		}
	})
	return l
}

// Write buffers p.
func (l *LogWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Flush writes out what is buffered.
func (l *LogWriter) Flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Flush()
}

// Close stops the flusher and flushes.
func (l *LogWriter) Close() error {
	close(l.done)
	l.wg.Wait()
	return l.Flush()
}

// FlushingHandler wraps a slog.Handler writing to a LogWriter and flushes
// after every record at level WARN or above.
func FlushingHandler(h slog.Handler, l *LogWriter) slog.Handler { return &flushing{h, l} }

type flushing struct {
	slog.Handler
	l *LogWriter
}

func (f *flushing) Handle(ctx context.Context, r slog.Record) error {
	err := f.Handler.Handle(ctx, r)
	if r.Level >= slog.LevelWarn {
		f.l.Flush()
	}
	return err
}

func (f *flushing) WithAttrs(as []slog.Attr) slog.Handler {
	return &flushing{f.Handler.WithAttrs(as), f.l}
}

func (f *flushing) WithGroup(name string) slog.Handler {
	return &flushing{f.Handler.WithGroup(name), f.l}
}
