package app

import (
	"context"
	"errors"

	"github.com/oklog/run"
)

// group is a command's one run group. Its first actor ends with ctx (the
// process's SIGINT and SIGTERM); when any actor returns, the group stops
// every actor in the order they were added, each cancelled and waited for
// before the next: so the shutdown of a command reads top to bottom where
// its actors are added.
type group struct {
	rg   run.Group
	errs []error // by actor, in the order added
}

func newGroup(ctx context.Context) *group {
	g := &group{}
	g.rg.Add(run.ContextHandler(ctx))
	return g
}

// add runs fn as an actor. Its context ends when the group stops it, not
// before: an actor later in the group keeps running while an earlier one
// shuts down.
func (g *group) add(ctx context.Context, fn func(context.Context) error) {
	actx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	i := len(g.errs)
	g.errs = append(g.errs, nil)
	g.rg.Add(func() error {
		defer close(done)
		g.errs[i] = fn(actx)
		return g.errs[i]
	}, func(error) {
		cancel()
		<-done
	})
}

// addStep runs nothing until the group stops; then, in its turn, stop
// runs: a step of the shutdown between the actors added before and after.
func (g *group) addStep(stop func()) {
	quit := make(chan struct{})
	g.rg.Add(func() error {
		<-quit
		return nil
	}, func(error) {
		stop()
		close(quit)
	})
}

// run runs the actors until the first returns, stops them all, and returns
// their errors (the end of ctx is none).
func (g *group) run() error {
	_ = g.rg.Run()
	return errors.Join(g.errs...)
}
