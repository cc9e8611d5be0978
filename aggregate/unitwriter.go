package aggregate

import (
	"context"
	"sync"
)

// unitWriter stores finished summary units, in order, on a goroutine of
// its own while the pass computes the next units: a store's write (a PUT, a
// fsync) then costs the pass no core time.
//
// It holds at most one unit: write blocks until the previous unit has been
// handed over, so memory never holds a queue. After a failed write no
// further unit is written, and the context startUnitWriter returned for the
// computing side is cancelled, so the pass stops early.
type unitWriter struct {
	ctx    context.Context // the pass's: writes stop with it (a lease ending)
	jobs   chan func(context.Context) error
	done   chan struct{}
	cancel context.CancelFunc

	mu      sync.Mutex
	err     error
	written int // units written
}

// startUnitWriter starts a writer whose writes run under ctx. The context
// it returns is for the computing side: it is also cancelled when a write
// fails.
func startUnitWriter(ctx context.Context) (*unitWriter, context.Context) {
	cctx, cancel := context.WithCancel(ctx)
	w := &unitWriter{ctx: ctx, jobs: make(chan func(context.Context) error), done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(w.done)
		for job := range w.jobs {
			if w.failed() != nil {
				continue // drain: nothing is written after a failure
			}
			if err := job(w.ctx); err != nil {
				w.mu.Lock()
				w.err = err
				w.mu.Unlock()
				cancel()
				continue
			}
			w.mu.Lock()
			w.written++
			w.mu.Unlock()
		}
	}()
	return w, cctx
}

// write hands job (store one unit) to the writer; it waits while
// the writer is still busy with the previous unit. It returns the error of
// an earlier write, if one failed, without running job.
func (w *unitWriter) write(job func(ctx context.Context) error) error {
	if err := w.failed(); err != nil {
		return err
	}
	w.jobs <- job
	return nil
}

func (w *unitWriter) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// wait lets the last unit finish and stops the writer: it returns how many
// units were written, and the error of the write that failed.
func (w *unitWriter) wait() (int, error) {
	close(w.jobs)
	<-w.done
	w.cancel()
	return w.written, w.err
}
