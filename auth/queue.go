package auth

import (
	"context"
	"sync"
)

// queue is a bounded queue of jobs that workers run off the request path:
// the mail queue's messages. Its owner logs and counts what the queue
// cannot take (put says why) and what Close abandons (the abandoned
// function): nothing is dropped silently.
type queue[T any] struct {
	jobs chan T
	stop context.CancelFunc // abandons the jobs in flight and what is left
	wg   sync.WaitGroup

	mu     sync.Mutex // orders put and close: nothing is sent on a closed channel
	closed bool
}

// newQueue starts workers that run do on each of at most n queued jobs
// until close. Once close runs out of time a worker skips the jobs left,
// and tells abandoned which as it ends.
func newQueue[T any](n, workers int, do func(ctx context.Context, job T), abandoned func(left []T)) *queue[T] {
	ctx, stop := context.WithCancel(context.Background())
	q := &queue[T]{jobs: make(chan T, n), stop: stop}
	for range workers {
		q.wg.Go(func() {
			var left []T
			for job := range q.jobs {
				if ctx.Err() != nil {
					left = append(left, job)
					continue
				}
				do(ctx, job)
			}
			if len(left) > 0 {
				abandoned(left)
			}
		})
	}
	return q
}

// put queues job without waiting. It returns "" if it did, else why not:
// "full" or "closed".
func (q *queue[T]) put(job T) (dropped string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return "closed"
	}
	select {
	case q.jobs <- job:
		return ""
	default:
		return "full"
	}
}

// close stops taking jobs and waits until every queued one has run, or
// until ctx ends: then the jobs in flight are cancelled and the rest
// abandoned. It returns once every worker has ended, so bound ctx. Calling
// it again waits again, for nothing.
func (q *queue[T]) close(ctx context.Context) {
	q.mu.Lock()
	if !q.closed {
		q.closed = true
		close(q.jobs)
	}
	q.mu.Unlock()
	defer context.AfterFunc(ctx, q.stop)()
	q.wg.Wait()
	q.stop() // releases the context
}
