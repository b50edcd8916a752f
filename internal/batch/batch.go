// Package batch lets concurrent calls share one round trip. A call that
// finds a free slot goes at once, alone; calls that arrive while every slot
// is busy wait and go together in the next batch. Nothing waits for a batch
// to fill, so a lone caller pays no delay, and under load the work per call
// shrinks as batches grow: the natural batching that lets one statement
// carry the claims of many callers.
package batch

import (
	"context"
	"sync"
	"time"
)

// Result is one call's share of a batch.
type Result[Out any] struct {
	Val Out
	Err error
}

// Run carries out a batch and returns one result per input, in order.
//
// Its context is the caller's when the batch holds one call. For several,
// it keeps the first caller's values and the earliest deadline among the
// calls, but no caller's cancellation: one caller giving up must not fail
// the others, and no call's work may outlast its caller's deadline.
type Run[In, Out any] func(ctx context.Context, ins []In) []Result[Out]

// Batcher runs calls through Run, a fixed number of batches at once and a
// fixed number of calls to a batch at most (New). It is safe for
// concurrent use.
type Batcher[In, Out any] struct {
	run   Run[In, Out]
	slots int
	max   int

	mu      sync.Mutex
	queue   []*call[In, Out]
	running int
}

// call is a queued call. It keeps its caller's context, as a request does:
// the batch that takes it needs the caller's deadline and values, and must
// see whether the caller has gone.
type call[In, Out any] struct {
	ctx      context.Context
	in       In
	res      Result[Out]
	panicked any // what Run panicked with, if it did
	done     chan struct{}
}

// New returns a Batcher of slots slots and at most perBatch calls to a
// batch. Values below 1 count as 1; perBatch 1 sends every call alone,
// still at most slots at once.
func New[In, Out any](slots, perBatch int, run Run[In, Out]) *Batcher[In, Out] {
	return &Batcher[In, Out]{run: run, slots: max(slots, 1), max: max(perBatch, 1)}
}

// Do runs in as part of a batch and returns its result. A call that finds
// a slot free and no one waiting runs at once, alone, on the caller's
// goroutine. Otherwise it waits; if ctx ends first, Do returns ctx.Err()
// at once. A call whose batch has not started by then is dropped. One
// whose batch is under way runs on: alone, under ctx, which stops it as a
// cancelled statement stops; with others, until the batch's deadline. A
// panic in Run reaches the callers of its batch. Tests:
// TestLoneCallGoesAloneWithItsContext, TestWaitingCallsShareBatches,
// TestCallerLeaving, TestBatchKeepsTheEarliestDeadline,
// TestPanicReachesCallers, TestSlotsAndValues.
func (b *Batcher[In, Out]) Do(ctx context.Context, in In) (Out, error) {
	b.mu.Lock()
	if b.running < b.slots && len(b.queue) == 0 {
		b.running++
		b.mu.Unlock()
		defer b.handOff()
		res := b.run(ctx, []In{in})[0]
		return res.Val, res.Err
	}
	c := &call[In, Out]{ctx: ctx, in: in, done: make(chan struct{})}
	b.queue = append(b.queue, c)
	if b.running < b.slots {
		b.running++
		go b.drain()
	}
	b.mu.Unlock()
	select {
	case <-c.done:
	case <-ctx.Done():
		select {
		case <-c.done: // an answer that came with the end is still the answer
		default:
			var zero Out
			return zero, ctx.Err()
		}
	}
	if c.panicked != nil {
		panic(c.panicked)
	}
	return c.res.Val, c.res.Err
}

// handOff gives up a slot its holder is done with, or passes it to a new
// drain if calls wait.
func (b *Batcher[In, Out]) handOff() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.queue) > 0 {
		go b.drain()
		return
	}
	b.running--
}

// drain holds one slot: it runs batches until the queue is empty.
func (b *Batcher[In, Out]) drain() {
	for {
		calls := b.take()
		if calls == nil {
			return
		}
		ins := make([]In, len(calls))
		for i, c := range calls {
			ins[i] = c.in
		}
		results, panicked := b.runBatch(calls, ins)
		for i, c := range calls {
			if panicked != nil {
				c.panicked = panicked
			} else {
				c.res = results[i]
			}
			close(c.done)
		}
	}
}

// runBatch runs a batch for drain, catching a panic so that the slot
// carries on and the callers, who can handle it, get it instead.
func (b *Batcher[In, Out]) runBatch(calls []*call[In, Out], ins []In) (results []Result[Out], panicked any) {
	ctx, cancel := batchContext(calls)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			panicked = r
		}
	}()
	return b.run(ctx, ins), nil
}

// batchContext is the context Run gets for calls (see Run).
func batchContext[In, Out any](calls []*call[In, Out]) (context.Context, context.CancelFunc) {
	if len(calls) == 1 {
		return calls[0].ctx, func() {}
	}
	ctx := context.WithoutCancel(calls[0].ctx)
	var earliest time.Time
	for _, c := range calls {
		if d, ok := c.ctx.Deadline(); ok && (earliest.IsZero() || d.Before(earliest)) {
			earliest = d
		}
	}
	if earliest.IsZero() {
		return ctx, func() {}
	}
	return context.WithDeadline(ctx, earliest)
}

// take removes the next batch from the queue, leaving out calls whose
// callers have gone, or gives up the slot when nothing is left.
func (b *Batcher[In, Out]) take() []*call[In, Out] {
	b.mu.Lock()
	defer b.mu.Unlock()
	var calls []*call[In, Out]
	for len(b.queue) > 0 && len(calls) < b.max {
		c := b.queue[0]
		b.queue[0] = nil
		b.queue = b.queue[1:]
		if err := c.ctx.Err(); err != nil {
			c.res.Err = err
			close(c.done)
			continue
		}
		calls = append(calls, c)
	}
	if len(calls) == 0 {
		b.queue = nil
		b.running--
		return nil
	}
	return calls
}
