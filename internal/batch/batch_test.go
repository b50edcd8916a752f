package batch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

// recorder is a Run that records each batch and, while gate is set, holds
// every batch until the gate is closed.
type recorder struct {
	mu      sync.Mutex
	batches [][]int
	ctxs    []context.Context
	gate    chan struct{}
}

func (r *recorder) run(ctx context.Context, ins []int) []Result[string] {
	r.mu.Lock()
	r.batches = append(r.batches, slices.Clone(ins))
	r.ctxs = append(r.ctxs, ctx)
	gate := r.gate
	r.mu.Unlock()
	if gate != nil {
		<-gate
	}
	out := make([]Result[string], len(ins))
	for i, in := range ins {
		if in < 0 {
			out[i].Err = fmt.Errorf("bad input %d", in)
			continue
		}
		out[i].Val = fmt.Sprint("v", in)
	}
	return out
}

// open lets one held batch through the gate.
func (r *recorder) open() {
	r.mu.Lock()
	gate := r.gate
	r.mu.Unlock()
	gate <- struct{}{}
}

func (r *recorder) seen() [][]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.batches)
}

type ctxKey struct{}

// begin runs f on a goroutine of wg and returns once the bubble is idle:
// f has gone as far as it can, into a batch or the queue.
func begin(wg *sync.WaitGroup, f func()) {
	wg.Go(f)
	synctest.Wait()
}

func TestLoneCallGoesAloneWithItsContext(t *testing.T) {
	r := &recorder{}
	b := New(4, 64, r.run)
	ctx := context.WithValue(t.Context(), ctxKey{}, "mine")
	got, err := b.Do(ctx, 7)
	if err != nil || got != "v7" {
		t.Fatalf("Do = %q, %v; want v7", got, err)
	}
	if err := func() error { _, err := b.Do(ctx, -1); return err }(); err == nil {
		t.Fatal("a failing call returned no error")
	}
	if want := [][]int{{7}, {-1}}; !slices.EqualFunc(r.seen(), want, slices.Equal) {
		t.Fatalf("batches %v, want %v", r.seen(), want)
	}
	if r.ctxs[0] != ctx {
		t.Fatal("a batch of one did not run with its caller's context")
	}
}

// Calls that arrive while the slots are busy go together, in order, at
// most max to a batch, each getting its own result.
func TestWaitingCallsShareBatches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{gate: make(chan struct{})}
		b := New(1, 3, r.run)
		results := make([]string, 8)
		errs := make([]error, 8)
		var wg sync.WaitGroup
		// Call 0 holds the only slot; the rest queue in order.
		for i := range 8 {
			begin(&wg, func() { results[i], errs[i] = b.Do(t.Context(), i) })
		}
		close(r.gate)
		wg.Wait()
		want := [][]int{{0}, {1, 2, 3}, {4, 5, 6}, {7}}
		if !slices.EqualFunc(r.seen(), want, slices.Equal) {
			t.Fatalf("batches %v, want %v", r.seen(), want)
		}
		for i := range 8 {
			if errs[i] != nil || results[i] != fmt.Sprint("v", i) {
				t.Errorf("call %d = %q, %v", i, results[i], errs[i])
			}
		}
	})
}

// One caller giving up neither cancels the batch it shares nor leaves its
// slot taken; a caller gone before its batch starts is left out of it.
func TestCallerLeaving(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{gate: make(chan struct{})}
		b := New(1, 64, r.run)
		var wg sync.WaitGroup
		begin(&wg, func() { b.Do(t.Context(), 0) })

		gone, leave := context.WithCancel(t.Context())
		var goneErr error
		begin(&wg, func() { _, goneErr = b.Do(gone, 1) })
		var stayed string
		begin(&wg, func() { stayed, _ = b.Do(t.Context(), 2) })
		leave()
		synctest.Wait()
		if !errors.Is(goneErr, context.Canceled) {
			t.Fatalf("a caller that left got %v, want context.Canceled", goneErr)
		}
		close(r.gate)
		wg.Wait()
		if want := [][]int{{0}, {2}}; !slices.EqualFunc(r.seen(), want, slices.Equal) {
			t.Fatalf("batches %v, want %v", r.seen(), want)
		}
		if stayed != "v2" {
			t.Fatalf("the caller that stayed got %q", stayed)
		}

		// A shared batch runs on, and answers the others, after its first
		// caller leaves while it runs.
		r.mu.Lock()
		r.gate = make(chan struct{})
		r.mu.Unlock()
		begin(&wg, func() { b.Do(t.Context(), 3) })
		first, leaveFirst := context.WithCancel(t.Context())
		var second string
		begin(&wg, func() { b.Do(first, 4) })
		begin(&wg, func() { second, _ = b.Do(t.Context(), 5) })
		r.open() // {3} ends; {4, 5} starts and holds at the gate
		synctest.Wait()
		leaveFirst()
		synctest.Wait()
		if err := r.ctxs[len(r.ctxs)-1].Err(); err != nil {
			t.Fatalf("a shared batch's context ended with its first caller: %v", err)
		}
		close(r.gate)
		wg.Wait()
		if second != "v5" {
			t.Fatalf("second caller got %q", second)
		}
		if want := [][]int{{0}, {2}, {3}, {4, 5}}; !slices.EqualFunc(r.seen(), want, slices.Equal) {
			t.Fatalf("batches %v, want %v", r.seen(), want)
		}
	})
}

// A shared batch ends by the earliest deadline among its calls, so that no
// call's work outlasts its caller.
func TestBatchKeepsTheEarliestDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{gate: make(chan struct{})}
		b := New(1, 64, r.run)
		var wg sync.WaitGroup
		begin(&wg, func() { b.Do(t.Context(), 0) })
		soon, cancelSoon := context.WithTimeout(t.Context(), time.Second)
		defer cancelSoon()
		later, cancelLater := context.WithTimeout(t.Context(), time.Hour)
		defer cancelLater()
		begin(&wg, func() { b.Do(later, 1) })
		begin(&wg, func() { b.Do(soon, 2) })
		want, _ := soon.Deadline()
		r.open()
		synctest.Wait()
		got, ok := r.ctxs[1].Deadline()
		if !ok || !got.Equal(want) {
			t.Fatalf("batch deadline %v (%t), want the earliest caller's, %v", got, ok, want)
		}
		close(r.gate)
		wg.Wait()
	})
}

// A panic in Run reaches the callers of its batch, inline or queued, and
// the slot carries on.
func TestPanicReachesCallers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{gate: make(chan struct{})}
		b := New(1, 64, func(ctx context.Context, ins []int) []Result[string] {
			out := r.run(ctx, ins)
			if slices.Contains(ins, 13) {
				panic("unlucky")
			}
			return out
		})
		recovered := make([]any, 3)
		var wg sync.WaitGroup
		do := func(i, in int) {
			begin(&wg, func() {
				defer func() { recovered[i] = recover() }()
				b.Do(t.Context(), in)
			})
		}
		do(0, 13) // inline
		do(1, 1)  // queued beside 13
		do(2, 13)
		close(r.gate)
		wg.Wait()
		for i, got := range recovered {
			if got != "unlucky" {
				t.Errorf("caller %d recovered %v, want the batch's panic", i, got)
			}
		}
		if got, err := b.Do(t.Context(), 7); err != nil || got != "v7" {
			t.Fatalf("after the panics, Do = %q, %v: the slot did not carry on", got, err)
		}
	})
}

// Slots run at once, and a shared batch keeps its first caller's values.
func TestSlotsAndValues(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{gate: make(chan struct{})}
		b := New(2, 64, r.run)
		var wg sync.WaitGroup
		wg.Go(func() { b.Do(t.Context(), 0) })
		begin(&wg, func() { b.Do(t.Context(), 1) })
		if n := len(r.seen()); n != 2 {
			t.Fatalf("%d of two lone calls under way with two slots free, want both", n)
		}
		first := context.WithValue(t.Context(), ctxKey{}, "first")
		begin(&wg, func() { b.Do(first, 2) })
		begin(&wg, func() { b.Do(t.Context(), 3) })
		close(r.gate)
		wg.Wait()
		if seen := r.seen(); len(seen) != 3 || !slices.Equal(seen[2], []int{2, 3}) {
			t.Fatalf("batches %v, want the two lone calls, then [2 3]", seen)
		}
		if got := r.ctxs[2].Value(ctxKey{}); got != "first" {
			t.Fatalf("shared batch's context value %v, want the first caller's", got)
		}
	})
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
