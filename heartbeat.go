package idem

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/idemhq/idem/observe"
	"github.com/idemhq/idem/store"
)

// A heartbeat renews a lease while fn runs. It keeps a local deadline on the
// monotonic clock: the send time of the last confirmed claim or renewal plus
// the lease, less a margin. When the deadline passes unconfirmed, or the
// store refuses a renewal, fn's context is cancelled with cause ErrLeaseLost
// and the outcome is refused, even if the store might still count the lease
// live.
//
// A heartbeat is also fn's context: the caller's, plus the lease as a value,
// cancelled when the lease is lost.
type heartbeat struct {
	context.Context
	e        *Engine
	lease    store.Lease
	detached context.Context         // for renewals: the caller's values, not its cancellation
	cancel   context.CancelCauseFunc // cancels fn's context

	mu       sync.Mutex
	timer    *time.Timer
	deadline time.Time
	lost     bool
	stopped  bool
	renewing sync.WaitGroup
}

// startHeartbeat starts renewing l, claimed by a request sent at claimSent.
// ctx is the caller's context; detached is the same without cancellation.
func (e *Engine) startHeartbeat(ctx, detached context.Context, l store.Lease, claimSent time.Time) *heartbeat {
	fnCtx, cancel := context.WithCancelCause(ctx)
	h := &heartbeat{
		Context:  fnCtx,
		e:        e,
		lease:    l,
		detached: detached,
		cancel:   cancel,
		deadline: e.localDeadline(claimSent),
	}
	h.mu.Lock()
	h.timer = time.AfterFunc(e.renewEvery(), h.beat)
	h.mu.Unlock()
	return h
}

// Value carries the lease to fn (LeaseFrom).
func (h *heartbeat) Value(key any) any {
	if key == (leaseKey{}) {
		return h.lease
	}
	return h.Context.Value(key)
}

// renewEvery is the renewal period: a third of the lease.
func (e *Engine) renewEvery() time.Duration { return e.cfg.LeaseTTL / 3 }

// localDeadline is when a lease confirmed by a request sent at sent must be
// given up. The store started the lease after sent, so it expires later than
// sent+LeaseTTL; the margin leaves fn time to stop after cancellation.
func (e *Engine) localDeadline(sent time.Time) time.Time {
	return sent.Add(e.cfg.LeaseTTL - e.cfg.LeaseTTL/10)
}

func (h *heartbeat) beat() {
	h.mu.Lock()
	if h.stopped || h.lost {
		h.mu.Unlock()
		return
	}
	budget := time.Until(h.deadline)
	if budget <= 0 {
		h.loseLocked()
		h.mu.Unlock()
		return
	}
	h.renewing.Add(1)
	h.mu.Unlock()
	defer h.renewing.Done()

	sent := time.Now()
	ctx, cancel := context.WithTimeout(h.detached, min(h.e.cfg.StoreTimeout, h.e.renewEvery(), budget))
	err := h.e.store.Renew(ctx, h.lease)
	cancel()

	h.mu.Lock()
	defer h.mu.Unlock()
	next := h.e.renewEvery()
	switch {
	case err == nil:
		h.deadline = h.e.localDeadline(sent)
	case errors.Is(err, ErrLeaseLost):
		h.loseLocked()
		return
	default:
		h.e.observe(h.detached, observe.Event{Kind: observe.StoreError, Key: h.lease.Key, Fence: h.lease.Fence, Err: err})
		h.e.cfg.Logger.LogAttrs(h.detached, slog.LevelWarn, "idem: lease renewal failed; retrying until the local deadline",
			slog.String("key", h.lease.Key), slog.Int64("fence", h.lease.Fence), slog.Any("error", err))
		next = min(next/2, max(time.Until(h.deadline), 0))
	}
	if !h.stopped {
		h.timer.Reset(next)
	}
}

func (h *heartbeat) loseLocked() {
	h.lost = true
	h.cancel(ErrLeaseLost)
}

// stop ends renewals and reports whether the lease was lost or its local
// deadline has passed, in which case the outcome must not be recorded.
func (h *heartbeat) stop() (lost bool) {
	h.mu.Lock()
	h.stopped = true
	h.timer.Stop()
	h.mu.Unlock()
	h.renewing.Wait()
	h.mu.Lock()
	lost = h.lost || !time.Now().Before(h.deadline)
	h.mu.Unlock()
	h.cancel(context.Canceled)
	return lost
}
