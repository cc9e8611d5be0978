package app

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

// stopLog records the order in which actors see their context end.
type stopLog struct {
	mu    sync.Mutex
	order []string
}

func (l *stopLog) actor(name string, err error) func(context.Context) error {
	return func(ctx context.Context) error {
		<-ctx.Done()
		time.Sleep(10 * time.Millisecond) // a slow shutdown: the next must wait
		l.mu.Lock()
		defer l.mu.Unlock()
		l.order = append(l.order, name)
		return err
	}
}

func TestGroupStopsActorsInTheOrderAdded(t *testing.T) {
	for _, tc := range []struct {
		name    string
		trigger string // the actor that returns first; "" : the signal context ends
		wantErr error
	}{
		{name: "signal"},
		{name: "an actor returns", trigger: "fails", wantErr: errBoom},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var log stopLog
			g := newGroup(ctx)
			g.add(ctx, log.actor("sources", nil))
			g.addStep(func() {
				log.mu.Lock()
				log.order = append(log.order, "step")
				log.mu.Unlock()
			})
			if tc.trigger != "" {
				g.add(ctx, func(context.Context) error { return errBoom })
			}
			g.add(ctx, log.actor("http", nil))
			if tc.trigger == "" {
				time.AfterFunc(20*time.Millisecond, cancel)
			}
			err := g.run()
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Errorf("run = %v, want %v", err, tc.wantErr)
			}
			if want := []string{"sources", "step", "http"}; !slices.Equal(log.order, want) {
				t.Errorf("stopped %v, want %v", log.order, want)
			}
		})
	}
}

func TestGroupJoinsEveryActorsError(t *testing.T) {
	errLate := errors.New("late")
	var log stopLog
	g := newGroup(context.Background())
	g.add(context.Background(), func(context.Context) error { return errBoom })
	g.add(context.Background(), log.actor("late", errLate))
	err := g.run()
	if !errors.Is(err, errBoom) || !errors.Is(err, errLate) {
		t.Errorf("run = %v, want both errors", err)
	}
}

var errBoom = errors.New("boom")
