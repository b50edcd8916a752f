package redisstore

import (
	"context"
	"sync/atomic"
	"time"
)

// deadlines bounds store operations by OpTimeout without a timer each. On a
// busy client a context.WithTimeout per operation cost a replay more than
// its own work, so operations started within the same 1/32 of OpTimeout
// share one deadline: each is bounded by between 31/32 of OpTimeout and
// OpTimeout, and a timer is made at most 32 times per OpTimeout.
type deadlines struct {
	timeout time.Duration
	current atomic.Pointer[deadline]
}

// A deadline is one shared context, done at its end.
type deadline struct {
	ctx    context.Context
	cancel context.CancelFunc // never called early: operations share ctx
	end    time.Time
}

// bound returns a context for one operation, and the function that ends
// it. A parent with a deadline of its own sooner than OpTimeout away (a
// renewal racing its lease) gets a context of its own, honouring both that
// deadline and its cancellation. Any other gets parent's values, done once
// the shared deadline passes: parent's cancellation does not interrupt an
// operation already sent, which OpTimeout bounds anyway, and callers check
// parent before they start one.
func (d *deadlines) bound(parent context.Context) (context.Context, context.CancelFunc) {
	now := time.Now()
	if end, ok := parent.Deadline(); ok && end.Sub(now) < d.timeout {
		return context.WithTimeout(parent, d.timeout)
	}
	dl := d.current.Load()
	if dl == nil || dl.end.Sub(now) < d.timeout-d.timeout/32 {
		end := now.Add(d.timeout)
		ctx, cancel := context.WithDeadline(context.Background(), end)
		dl = &deadline{ctx: ctx, cancel: cancel, end: end}
		d.current.Store(dl)
	}
	return boundContext{Context: dl.ctx, values: parent}, func() {}
}

// boundContext is a shared deadline's Done, Err and Deadline with the
// values of the operation's own context, so tracing and logging see the
// caller's.
type boundContext struct {
	context.Context
	values context.Context
}

// Value answers from the shared context first, which holds only the
// context package's own keys (so that cancellation and its cause are the
// shared deadline's), then from the operation's.
func (c boundContext) Value(key any) any {
	if v := c.Context.Value(key); v != nil {
		return v
	}
	return c.values.Value(key)
}
