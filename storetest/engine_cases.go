package storetest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/observe"
	"github.com/idemhq/idem/store"
)

// testEngineStorm runs 64 goroutines over the same 100 keys, through four
// engines standing in for four processes: fn must run exactly once per key,
// and every caller of a key must see that one execution's value.
func testEngineStorm(t *testing.T, s store.Store) {
	const goroutines, keys, engines = 64, 100, 4
	var engs [engines]*idem.Engine
	for i := range engs {
		engs[i] = newEngine(t, s, idem.Config{})
	}
	prefix := newRunKey(t)
	var (
		executions [keys]atomic.Int32
		mu         sync.Mutex
		seen       [keys]map[string]int // value → callers that got it
		wg         sync.WaitGroup
	)
	for g := range goroutines {
		wg.Go(func() {
			e := engs[g%engines]
			for _, k := range mathrand.Perm(keys) {
				res, err := e.Run(t.Context(), fmt.Sprintf("%s/%d", prefix, k), func(context.Context) ([]byte, error) {
					executions[k].Add(1)
					time.Sleep(time.Millisecond) // overlap the callers
					return []byte(rand.Text()), nil
				}, nil)
				if err != nil {
					t.Errorf("Run(key %d): %v", k, err)
					continue
				}
				mu.Lock()
				if seen[k] == nil {
					seen[k] = map[string]int{}
				}
				seen[k][string(res.Value)]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	total := 0
	for k := range keys {
		n := int(executions[k].Load())
		total += n
		if n != 1 {
			t.Errorf("key %d: fn ran %d times, want 1", k, n)
		}
		if len(seen[k]) != 1 {
			t.Errorf("key %d: callers saw %d different values, want 1", k, len(seen[k]))
		}
	}
	if total != keys {
		t.Fatalf("storm of %d goroutines x %d keys: %d executions, want %d", goroutines, keys, total, keys)
	}
}

func testEngineErrorReplayed(t *testing.T, s store.Store) {
	errDeclined := errors.New("card declined")
	cfg := idem.Config{Errors: map[string]error{"card_declined": errDeclined}}
	first, second := newEngine(t, s, cfg), newEngine(t, s, cfg)
	key := newRunKey(t)
	runs := 0
	fn := func(context.Context) ([]byte, error) {
		runs++
		return nil, fmt.Errorf("charge ch_1: %w", errDeclined)
	}
	res, err := first.Run(t.Context(), key, fn, nil)
	if !errors.Is(err, errDeclined) || res.Replayed {
		t.Fatalf("first Run = (replayed %t, %v), want fn's own error", res.Replayed, err)
	}
	res, err = second.Run(t.Context(), key, fn, nil)
	re, ok := errors.AsType[*idem.ReplayedError](err)
	if !ok || !res.Replayed {
		t.Fatalf("second Run = (replayed %t, %v), want a replayed *idem.ReplayedError", res.Replayed, err)
	}
	if re.Code != "card_declined" || re.Message != "charge ch_1: card declined" {
		t.Errorf("replayed error = {Code %q, Message %q}, want {card_declined, charge ch_1: card declined}", re.Code, re.Message)
	}
	if !errors.Is(err, errDeclined) {
		t.Errorf("errors.Is(replayed error, errDeclined) = false, want true")
	}
	if runs != 1 {
		t.Errorf("fn ran %d times, want 1", runs)
	}
}

type codedError struct{ code string }

func (e *codedError) Error() string     { return "coded: " + e.code }
func (e *codedError) ErrorCode() string { return e.code }

// testEngineErrorCodeReplayed checks that an unregistered error keeps the
// code it reports through an ErrorCode method.
func testEngineErrorCodeReplayed(t *testing.T, s store.Store) {
	first, second := newEngine(t, s, idem.Config{}), newEngine(t, s, idem.Config{})
	key := newRunKey(t)
	fn := func(context.Context) ([]byte, error) { return nil, &codedError{"insufficient_funds"} }
	if _, err := first.Run(t.Context(), key, fn, nil); err == nil {
		t.Fatal("first Run: nil error, want fn's error")
	}
	_, err := second.Run(t.Context(), key, fn, nil)
	re, ok := errors.AsType[*idem.ReplayedError](err)
	if !ok || re.Code != "insufficient_funds" || re.Message != "coded: insufficient_funds" {
		t.Fatalf("replayed error = %#v, want code insufficient_funds and the original message", err)
	}
}

func testEngineTransientErrorReleases(t *testing.T, s store.Store) {
	e := newEngine(t, s, idem.Config{})
	errBusy := errors.New("provider busy")
	opts := &idem.RunOptions{Retryable: func(err error) bool { return errors.Is(err, errBusy) }}
	key := newRunKey(t)
	runs := 0
	fn := func(context.Context) ([]byte, error) {
		if runs++; runs == 1 {
			return nil, errBusy
		}
		return []byte("ok"), nil
	}
	if _, err := e.Run(t.Context(), key, fn, opts); !errors.Is(err, errBusy) {
		t.Fatalf("first Run = %v, want the transient error", err)
	}
	res, err := e.Run(t.Context(), key, fn, opts)
	if err != nil || res.Replayed || string(res.Value) != "ok" {
		t.Fatalf("Run after a transient error = (%q, replayed %t, %v), want a fresh run returning ok", res.Value, res.Replayed, err)
	}
	res, err = e.Run(t.Context(), key, fn, opts)
	if err != nil || !res.Replayed || string(res.Value) != "ok" {
		t.Fatalf("third Run = (%q, replayed %t, %v), want the replay of ok", res.Value, res.Replayed, err)
	}
	if runs != 2 {
		t.Fatalf("fn ran %d times, want 2", runs)
	}
}

func testEngineMismatch(t *testing.T, s store.Store) {
	e := newEngine(t, s, idem.Config{})
	key := newRunKey(t)
	runs := 0
	fn := func(context.Context) ([]byte, error) { runs++; return []byte("a"), nil }
	if _, err := e.Run(t.Context(), key, fn, &idem.RunOptions{Fingerprint: "A"}); err != nil {
		t.Fatalf("first Run: %v", err)
	}
	res, err := e.Run(t.Context(), key, fn, &idem.RunOptions{Fingerprint: "B"})
	if !errors.Is(err, idem.ErrMismatch) || res.Value != nil {
		t.Fatalf("Run with another fingerprint = (%q, %v), want no value and ErrMismatch", res.Value, err)
	}
	if res, err := e.Run(t.Context(), key, fn, &idem.RunOptions{Fingerprint: "A"}); err != nil || string(res.Value) != "a" {
		t.Fatalf("Run with the first fingerprint again = (%q, %v), want the replay of a", res.Value, err)
	}
	if runs != 1 {
		t.Fatalf("fn ran %d times, want 1", runs)
	}
}

func testEngineWaiterGetsOutcome(t *testing.T, s store.Store) {
	holder, waiter := newEngine(t, s, idem.Config{}), newEngine(t, s, idem.Config{})
	key := newRunKey(t)
	started, finish := make(chan struct{}), make(chan struct{})
	held := make(chan error, 1)
	go func() {
		_, err := holder.Run(t.Context(), key, func(context.Context) ([]byte, error) {
			close(started)
			<-finish
			return []byte("v"), nil
		}, nil)
		held <- err
	}()
	select {
	case <-started:
	case err := <-held:
		t.Fatalf("holder returned %v before fn started", err)
	}
	type result struct {
		res idem.Result[[]byte]
		err error
	}
	waited := make(chan result, 1)
	go func() {
		res, err := waiter.Run(t.Context(), key, func(context.Context) ([]byte, error) {
			return nil, errors.New("fn ran a second time")
		}, nil)
		waited <- result{res, err}
	}()
	time.Sleep(100 * time.Millisecond)
	select {
	case r := <-waited:
		t.Fatalf("waiter returned (%q, %v) while the holder was still running", r.res.Value, r.err)
	default:
	}
	close(finish)
	finished := time.Now()
	r := <-waited
	if r.err != nil || !r.res.Replayed || string(r.res.Value) != "v" {
		t.Fatalf("waiter got (%q, replayed %t, %v), want the holder's v, replayed", r.res.Value, r.res.Replayed, r.err)
	}
	if d := time.Since(finished); d > prompt {
		t.Fatalf("waiter returned %s after the holder finished, want within %s: it was not woken", d, prompt)
	}
	if err := <-held; err != nil {
		t.Fatalf("holder: %v", err)
	}
}

// crashedStore stands in for a process that dies after claiming: nothing it
// would send after the claim reaches the store.
type crashedStore struct{ store.Store }

var errCrashed = errors.New("storetest: process crashed")

func (crashedStore) Renew(context.Context, store.Lease) error            { return errCrashed }
func (crashedStore) Complete(context.Context, store.Lease, []byte) error { return errCrashed }
func (crashedStore) Release(context.Context, store.Lease) error          { return errCrashed }

func testEngineTakeoverAfterCrash(t *testing.T, s store.Store) {
	key := newRunKey(t)
	crashed := newEngine(t, crashedStore{s}, idem.Config{LeaseTTL: shortLease})
	var crashedFence int64
	_, err := crashed.Run(t.Context(), key, func(ctx context.Context) ([]byte, error) {
		l, _ := idem.LeaseFrom(ctx)
		crashedFence = l.Fence
		return []byte("lost"), nil
	}, nil)
	se, ok := errors.AsType[*idem.StoreError](err)
	if !errors.Is(err, idem.ErrNotRecorded) || !ok || !se.Executed || se.Op != "complete" {
		t.Fatalf("Run whose completion failed = %v, want a *StoreError{Op: complete, Executed: true} matching ErrNotRecorded", err)
	}

	var (
		mu        sync.Mutex
		takeovers int
	)
	survivor := newEngine(t, s, idem.Config{Observer: func(_ context.Context, ev observe.Event) {
		if ev.Kind == observe.Takeover {
			mu.Lock()
			takeovers++
			mu.Unlock()
		}
	}})
	var fence int64
	res, err := survivor.Run(t.Context(), key, func(ctx context.Context) ([]byte, error) {
		l, _ := idem.LeaseFrom(ctx)
		fence = l.Fence
		return []byte("rerun"), nil
	}, nil)
	if err != nil || res.Replayed || string(res.Value) != "rerun" {
		t.Fatalf("Run after the holder crashed = (%q, replayed %t, %v), want a fresh run after takeover", res.Value, res.Replayed, err)
	}
	if fence <= crashedFence {
		t.Errorf("takeover fence = %d, want > the crashed holder's %d", fence, crashedFence)
	}
	mu.Lock()
	defer mu.Unlock()
	if takeovers != 1 {
		t.Errorf("observed %d takeover events, want 1", takeovers)
	}
}

// partitionedStore stands in for a holder cut off from the store after
// claiming: its renewals never land.
type partitionedStore struct{ store.Store }

func (partitionedStore) Renew(context.Context, store.Lease) error {
	return errors.New("storetest: renewal lost in the network")
}

func testEnginePausedHolderCannotComplete(t *testing.T, s store.Store) {
	key := newRunKey(t)
	paused := newEngine(t, partitionedStore{s}, idem.Config{LeaseTTL: shortLease})
	survivor := newEngine(t, s, idem.Config{})
	started, resume := make(chan struct{}), make(chan struct{})
	type result struct {
		err   error
		cause error
	}
	pausedDone := make(chan result, 1)
	go func() {
		var cause error
		_, err := paused.Run(t.Context(), key, func(ctx context.Context) ([]byte, error) {
			close(started)
			<-resume // paused: deaf to its context until resumed
			// The lease ran out before the survivor could take over, but
			// the engine's timer for it may be late on a loaded machine.
			select {
			case <-ctx.Done():
			case <-time.After(prompt):
			}
			cause = context.Cause(ctx)
			return []byte("paused"), nil
		}, nil)
		pausedDone <- result{err, cause}
	}()
	select {
	case <-started:
	case r := <-pausedDone:
		t.Fatalf("paused holder returned %v before fn started", r.err)
	}
	res, err := survivor.Run(t.Context(), key, func(context.Context) ([]byte, error) {
		return []byte("survivor"), nil
	}, nil)
	if err != nil || res.Replayed || string(res.Value) != "survivor" {
		t.Fatalf("survivor Run = (%q, replayed %t, %v), want a fresh run after the lease expired", res.Value, res.Replayed, err)
	}
	close(resume)
	r := <-pausedDone
	if !errors.Is(r.err, idem.ErrLeaseLost) {
		t.Fatalf("paused holder's Run = %v, want ErrLeaseLost", r.err)
	}
	if !errors.Is(r.cause, idem.ErrLeaseLost) {
		t.Errorf("paused holder's context cause = %v, want ErrLeaseLost", r.cause)
	}
	res, err = survivor.Run(t.Context(), key, func(context.Context) ([]byte, error) {
		return nil, errors.New("fn ran a third time")
	}, nil)
	if err != nil || string(res.Value) != "survivor" {
		t.Fatalf("Run after both = (%q, %v), want the survivor's outcome to stand", res.Value, err)
	}
}

func testEngineFenceReachesFn(t *testing.T, s store.Store) {
	e := newEngine(t, s, idem.Config{})
	key := newRunKey(t)
	var (
		lease idem.Lease
		ok    bool
	)
	if _, err := e.Run(t.Context(), key, func(ctx context.Context) ([]byte, error) {
		lease, ok = idem.LeaseFrom(ctx)
		return nil, nil
	}, nil); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !ok || lease.Fence <= 0 {
		t.Fatalf("LeaseFrom inside fn = (%+v, %t), want a lease with a positive fence", lease, ok)
	}
	if !strings.HasPrefix(lease.StoreKey, "storetest/") || strings.Contains(lease.StoreKey, key) {
		t.Fatalf("lease key %q: want the namespaced hash, never the raw key", lease.StoreKey)
	}
	if _, ok := idem.LeaseFrom(t.Context()); ok {
		t.Fatal("LeaseFrom outside fn: ok = true, want false")
	}
}
