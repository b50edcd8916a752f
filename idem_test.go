package idem_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/memstore"
	"github.com/idemhq/idem/observe"
	"github.com/idemhq/idem/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// faultStore wraps a real store to count calls and inject failures at the
// process boundary, where a real network or a crash would.
type faultStore struct {
	store.Store
	claims, renews, completes, releases atomic.Int32

	claimErr, renewErr, completeErr error
}

func (s *faultStore) Claim(ctx context.Context, p store.ClaimParams) (store.ClaimResult, error) {
	s.claims.Add(1)
	if s.claimErr != nil {
		return store.ClaimResult{}, s.claimErr
	}
	return s.Store.Claim(ctx, p)
}

func (s *faultStore) Renew(ctx context.Context, l store.Lease) error {
	s.renews.Add(1)
	if s.renewErr != nil {
		return s.renewErr
	}
	return s.Store.Renew(ctx, l)
}

func (s *faultStore) Complete(ctx context.Context, l store.Lease, outcome []byte) error {
	s.completes.Add(1)
	if s.completeErr != nil {
		return s.completeErr
	}
	return s.Store.Complete(ctx, l, outcome)
}

func (s *faultStore) Release(ctx context.Context, l store.Lease) error {
	s.releases.Add(1)
	return s.Store.Release(ctx, l)
}

func newEngine(t testing.TB, s store.Store, cfg *idem.Config) *idem.Engine {
	t.Helper()
	e, err := idem.New(s, cfg)
	if err != nil {
		t.Fatalf("idem.New: %v", err)
	}
	return e
}

func value(v string) func(context.Context) ([]byte, error) {
	return func(context.Context) ([]byte, error) { return []byte(v), nil }
}

func mustNotRun(t *testing.T) func(context.Context) ([]byte, error) {
	return func(context.Context) ([]byte, error) {
		t.Error("fn ran, want it not to")
		return nil, nil
	}
}

func TestNewValidatesConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  idem.Config
		want string
	}{
		{"ShortLease", idem.Config{LeaseTTL: time.Millisecond}, "LeaseTTL"},
		{"NegativeRetention", idem.Config{Retention: -time.Second}, "Retention"},
		{"NegativeMaxWait", idem.Config{MaxWait: -time.Second}, "MaxWait"},
		{"NegativeStoreTimeout", idem.Config{StoreTimeout: -time.Second}, "StoreTimeout"},
		{"UpperCaseNamespace", idem.Config{Namespace: "Payments"}, "Namespace"},
		{"SlashInNamespace", idem.Config{Namespace: "a/b"}, "Namespace"},
		{"LongNamespace", idem.Config{Namespace: strings.Repeat("n", 64)}, "Namespace"},
		{"EmptyErrorCode", idem.Config{Errors: map[string]error{"": errors.New("x")}}, "Errors"},
		{"NilRegisteredError", idem.Config{Errors: map[string]error{"x": nil}}, "Errors"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := idem.New(memstore.New(), &tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New(%+v) = %v, want an error naming %s", tc.cfg, err, tc.want)
			}
		})
	}
	if _, err := idem.New(nil, nil); err == nil {
		t.Fatal("New(nil store) = nil error, want one")
	}
	if _, err := idem.New(memstore.New(), nil); err != nil {
		t.Fatalf("New(store, nil config) = %v, want defaults", err)
	}
}

func TestRunRejectsInvalidInputBeforeTheStore(t *testing.T) {
	s := &faultStore{Store: memstore.New()}
	e := newEngine(t, s, nil)
	for _, tc := range []struct {
		name, key, fingerprint string
	}{
		{"EmptyKey", "", ""},
		{"LongKey", strings.Repeat("k", 255+1), ""},
		{"Newline", "order\n1", ""},
		{"NUL", "order\x001", ""},
		{"DEL", "order\x7f", ""},
		{"C1Control", "order\u0085", ""},
		{"InvalidUTF8", "order\xff", ""},
		{"LongFingerprint", "order-1", strings.Repeat("f", 255+1)},
	} {
		_, err := e.Run(t.Context(), tc.key, mustNotRun(t), &idem.RunOptions{Fingerprint: tc.fingerprint})
		if !errors.Is(err, idem.ErrInvalidKey) {
			t.Errorf("%s: Run = %v, want ErrInvalidKey", tc.name, err)
		}
		if strings.Contains(fmt.Sprint(err), tc.key) && tc.key != "" {
			t.Errorf("%s: error %q echoes the raw key", tc.name, err)
		}
	}
	if n := s.claims.Load(); n != 0 {
		t.Fatalf("store saw %d claims for invalid input, want 0", n)
	}
	for _, key := range []string{"k", strings.Repeat("k", 255), "ключ-🙂", "order 1: a/b"} {
		if _, err := e.Run(t.Context(), key, value("ok"), nil); err != nil {
			t.Errorf("Run(valid key %q) = %v", key, err)
		}
	}
}

// TestCoalescingMakesOneClaim checks that concurrent same-key calls in one
// process share one store claim and one execution.
func TestCoalescingMakesOneClaim(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &faultStore{Store: memstore.New()}
		e := newEngine(t, s, nil)
		release := make(chan struct{})
		var runs atomic.Int32
		fn := func(context.Context) ([]byte, error) {
			runs.Add(1)
			<-release
			return []byte("v"), nil
		}
		const callers = 50
		var (
			wg       sync.WaitGroup
			replayed atomic.Int32
		)
		for range callers {
			wg.Go(func() {
				res, err := e.Run(t.Context(), "order-1", fn, nil)
				if err != nil || string(res.Value) != "v" {
					t.Errorf("Run = (%q, %v), want v", res.Value, err)
				}
				if res.Replayed {
					replayed.Add(1)
				}
			})
		}
		synctest.Wait() // every caller is either in fn or waiting for it
		close(release)
		wg.Wait()
		if n := s.claims.Load(); n != 1 {
			t.Errorf("store claims = %d, want 1", n)
		}
		if n := runs.Load(); n != 1 {
			t.Errorf("fn ran %d times, want 1", n)
		}
		if n := replayed.Load(); n != callers-1 {
			t.Errorf("replayed results = %d, want %d", n, callers-1)
		}
	})
}

// TestCoalescingKeepsFingerprintsApart checks that a call with another
// fingerprint is not handed the in-flight call's outcome.
func TestCoalescingKeepsFingerprintsApart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEngine(t, memstore.New(), nil)
		release := make(chan struct{})
		go func() {
			e.Run(t.Context(), "order-1", func(context.Context) ([]byte, error) {
				<-release
				return []byte("A"), nil
			}, &idem.RunOptions{Fingerprint: "A"})
		}()
		synctest.Wait()
		res, err := e.Run(t.Context(), "order-1", mustNotRun(t), &idem.RunOptions{Fingerprint: "B"})
		if !errors.Is(err, idem.ErrMismatch) || res.Value != nil {
			t.Fatalf("Run(other fingerprint) during flight = (%q, %v), want ErrMismatch", res.Value, err)
		}
		close(release)
	})
}

func TestFailFast(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := memstore.New()
		e, other := newEngine(t, s, nil), newEngine(t, s, nil)
		release := make(chan struct{})
		go func() {
			e.Run(t.Context(), "order-1", func(context.Context) ([]byte, error) {
				<-release
				return []byte("v"), nil
			}, nil)
		}()
		synctest.Wait()
		start := time.Now()
		for name, eng := range map[string]*idem.Engine{"SameProcess": e, "OtherProcess": other} {
			_, err := eng.Run(t.Context(), "order-1", mustNotRun(t), &idem.RunOptions{FailFast: true})
			if !errors.Is(err, idem.ErrInFlight) {
				t.Errorf("%s: FailFast Run = %v, want ErrInFlight", name, err)
			}
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("FailFast took %s, want no wait", d)
		}
		close(release)
	})
}

func TestMaxWaitBoundsTheWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := memstore.New()
		holder, waiter := newEngine(t, s, nil), newEngine(t, s, nil)
		release := make(chan struct{})
		go func() {
			holder.Run(t.Context(), "order-1", func(context.Context) ([]byte, error) {
				<-release
				return []byte("v"), nil
			}, nil)
		}()
		synctest.Wait()
		for name, eng := range map[string]*idem.Engine{"SameProcess": holder, "OtherProcess": waiter} {
			start := time.Now()
			_, err := eng.Run(t.Context(), "order-1", mustNotRun(t), &idem.RunOptions{MaxWait: 2 * time.Second})
			if !errors.Is(err, idem.ErrInFlight) {
				t.Errorf("%s: Run = %v, want ErrInFlight", name, err)
			}
			if d := time.Since(start); d != 2*time.Second {
				t.Errorf("%s: gave up after %s, want MaxWait 2s", name, d)
			}
		}
		close(release)
	})
}

// TestRenewalKeepsALongFnAlive checks that fn may run far past its lease
// while renewals succeed: no takeover, one execution.
func TestRenewalKeepsALongFnAlive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &faultStore{Store: memstore.New()}
		holder := newEngine(t, s, &idem.Config{LeaseTTL: 3 * time.Second})
		waiter := newEngine(t, s, &idem.Config{MaxWait: time.Minute})
		go func() {
			holder.Run(t.Context(), "order-1", func(ctx context.Context) ([]byte, error) {
				time.Sleep(10 * time.Second)
				return []byte("v"), ctx.Err()
			}, nil)
		}()
		synctest.Wait()
		res, err := waiter.Run(t.Context(), "order-1", mustNotRun(t), nil)
		if err != nil || !res.Replayed || string(res.Value) != "v" {
			t.Fatalf("waiter = (%q, %v), want the holder's v", res.Value, err)
		}
		// 10s of fn at one renewal per second (LeaseTTL/3).
		if n := s.renews.Load(); n < 9 || n > 10 {
			t.Fatalf("renewals = %d, want 9 or 10 for 10s at one per second", n)
		}
	})
}

// TestLeaseLostAtLocalDeadline checks that when no renewal is confirmed, fn's
// context is cancelled at the local deadline (90% of the lease after the
// claim was sent), with cause ErrLeaseLost, and nothing is recorded.
func TestLeaseLostAtLocalDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := memstore.New()
		s := &faultStore{Store: mem, renewErr: errors.New("network partition")}
		var events []observe.Kind
		e := newEngine(t, s, &idem.Config{LeaseTTL: 10 * time.Second, Observer: func(_ context.Context, ev observe.Event) {
			events = append(events, ev.Kind)
		}})
		start := time.Now()
		var cancelledAfter time.Duration
		var cause error
		_, err := e.Run(t.Context(), "order-1", func(ctx context.Context) ([]byte, error) {
			<-ctx.Done()
			cancelledAfter, cause = time.Since(start), context.Cause(ctx)
			return nil, ctx.Err()
		}, nil)
		if !errors.Is(err, idem.ErrLeaseLost) {
			t.Fatalf("Run = %v, want ErrLeaseLost", err)
		}
		if cancelledAfter != 9*time.Second || !errors.Is(cause, idem.ErrLeaseLost) {
			t.Fatalf("fn cancelled after %s with cause %v, want 9s and ErrLeaseLost", cancelledAfter, cause)
		}
		if n := s.completes.Load(); n != 0 {
			t.Fatalf("Complete called %d times after the lease was lost, want 0", n)
		}
		if !slices.Contains(events, observe.LeaseLost) {
			t.Errorf("events %v lack lease_lost", events)
		}
		// Nothing was recorded: once the store's lease runs out, the next
		// call runs fn.
		time.Sleep(time.Second)
		res, err := newEngine(t, mem, nil).Run(t.Context(), "order-1", value("again"), nil)
		if err != nil || res.Replayed {
			t.Fatalf("Run after the lost lease = (replayed %t, %v), want a fresh run", res.Replayed, err)
		}
	})
}

// TestRenewRefusedCancelsAtOnce checks that a refused renewal (a newer
// holder owns the key) cancels fn at that renewal, not at the deadline.
func TestRenewRefusedCancelsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &faultStore{Store: memstore.New(), renewErr: idem.ErrLeaseLost}
		e := newEngine(t, s, &idem.Config{LeaseTTL: 9 * time.Second})
		start := time.Now()
		var cancelledAfter time.Duration
		_, err := e.Run(t.Context(), "order-1", func(ctx context.Context) ([]byte, error) {
			<-ctx.Done()
			cancelledAfter = time.Since(start)
			return []byte("too late"), nil
		}, nil)
		if !errors.Is(err, idem.ErrLeaseLost) || cancelledAfter != 3*time.Second {
			t.Fatalf("Run = %v, fn cancelled after %s; want ErrLeaseLost at the first renewal (3s)", err, cancelledAfter)
		}
		if n := s.completes.Load(); n != 0 {
			t.Fatalf("Complete called %d times, want 0", n)
		}
	})
}

func TestPanicReleasesTheClaim(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &faultStore{Store: memstore.New()}
		e := newEngine(t, s, nil)
		start := make(chan struct{})
		// A coalesced waiter must not inherit the panic or hang: it runs
		// fn itself once the claim is released.
		waiterDone := make(chan idem.Result[[]byte], 1)
		go func() {
			<-start
			res, err := e.Run(t.Context(), "order-1", value("recovered"), nil)
			if err != nil {
				t.Errorf("waiter Run = %v", err)
			}
			waiterDone <- res
		}()
		func() {
			defer func() {
				if r := recover(); r != "boom" {
					t.Errorf("recovered %v, want the original panic value boom", r)
				}
			}()
			e.Run(t.Context(), "order-1", func(context.Context) ([]byte, error) {
				close(start)
				synctest.Wait() // the waiter has joined
				panic("boom")
			}, nil)
		}()
		res := <-waiterDone
		if res.Replayed || string(res.Value) != "recovered" {
			t.Fatalf("waiter got (%q, replayed %t), want its own fresh run", res.Value, res.Replayed)
		}
		if n := s.releases.Load(); n != 1 {
			t.Fatalf("releases = %d, want 1", n)
		}
	})
}

func TestGoexitReleasesTheClaim(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEngine(t, memstore.New(), nil)
		done := make(chan struct{})
		go func() {
			defer close(done)
			e.Run(t.Context(), "order-1", func(context.Context) ([]byte, error) {
				runtime.Goexit()
				return nil, nil
			}, nil)
		}()
		<-done
		res, err := e.Run(t.Context(), "order-1", value("v"), nil)
		if err != nil || res.Replayed {
			t.Fatalf("Run after Goexit = (replayed %t, %v), want a fresh run", res.Replayed, err)
		}
	})
}

func TestCallerGivingUpReleases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEngine(t, memstore.New(), nil)
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		_, err := e.Run(ctx, "order-1", func(ctx context.Context) ([]byte, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}, nil)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Run = %v, want the caller's deadline", err)
		}
		res, err := e.Run(t.Context(), "order-1", value("v"), nil)
		if err != nil || res.Replayed {
			t.Fatalf("Run after the caller gave up = (replayed %t, %v), want a fresh run", res.Replayed, err)
		}
	})
}

// TestSuccessAfterCallerGaveUpIsRecorded checks that an effect that
// happened is recorded even when the caller is no longer listening.
func TestSuccessAfterCallerGaveUpIsRecorded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &faultStore{Store: memstore.New()}
		e := newEngine(t, s, nil)
		ctx, cancel := context.WithCancel(t.Context())
		res, err := e.Run(ctx, "order-1", func(context.Context) ([]byte, error) {
			cancel()
			return []byte("charged"), nil
		}, nil)
		if err != nil || string(res.Value) != "charged" {
			t.Fatalf("Run = (%q, %v), want charged", res.Value, err)
		}
		res, err = e.Run(t.Context(), "order-1", mustNotRun(t), nil)
		if err != nil || !res.Replayed || string(res.Value) != "charged" {
			t.Fatalf("replay = (%q, %v), want charged", res.Value, err)
		}
	})
}

func TestStoreFailureBeforeFnFailsClosed(t *testing.T) {
	e := newEngine(t, &faultStore{Store: memstore.New(), claimErr: errors.New("connection refused")}, nil)
	_, err := e.Run(t.Context(), "order-1", mustNotRun(t), nil)
	se, ok := errors.AsType[*idem.StoreError](err)
	if !ok || se.Executed || se.Op != "claim" || errors.Is(err, idem.ErrNotRecorded) {
		t.Fatalf("Run = %v, want a *StoreError{Op: claim, Executed: false} not matching ErrNotRecorded", err)
	}
	if !strings.Contains(err.Error(), "fn did not run") {
		t.Errorf("error %q does not say fn did not run", err)
	}
}

// TestLostRecordIsLoud checks the worst case, an effect without a record:
// a distinct error, an ERROR log line and a store_error event.
func TestLostRecordIsLoud(t *testing.T) {
	var logs bytes.Buffer
	var events []observe.Event
	e := newEngine(t, &faultStore{Store: memstore.New(), completeErr: errors.New("connection reset")}, &idem.Config{
		Logger:   slog.New(slog.NewJSONHandler(&logs, nil)),
		Observer: func(_ context.Context, ev observe.Event) { events = append(events, ev) },
	})
	res, err := e.Run(t.Context(), "order-1", value("charged"), nil)
	se, ok := errors.AsType[*idem.StoreError](err)
	if !ok || !se.Executed || se.Op != "complete" || !errors.Is(err, idem.ErrNotRecorded) {
		t.Fatalf("Run = %v, want *StoreError{Op: complete, Executed: true} matching ErrNotRecorded", err)
	}
	if string(res.Value) != "charged" {
		t.Errorf("Value = %q, want fn's value alongside the error", res.Value)
	}
	if !strings.Contains(err.Error(), "fn ran but its outcome was not recorded") {
		t.Errorf("error %q does not say the outcome is missing", err)
	}
	if !strings.Contains(logs.String(), `"level":"ERROR"`) || strings.Contains(logs.String(), "order-1") {
		t.Errorf("log %q: want an ERROR line that does not name the raw key", logs.String())
	}
	if len(events) != 1 || events[0].Kind != observe.NotRecorded || !errors.Is(events[0].Err, idem.ErrNotRecorded) || events[0].Fence != 1 {
		t.Errorf("events = %+v, want one not_recorded at fence 1 matching ErrNotRecorded", events)
	}
}

// TestDefaultLoggerWarns: with no Logger set, the engine logs to
// slog.Default() at warn level and above, so a lost outcome is never
// silent, and takeovers (info) stay out of it.
func TestDefaultLoggerWarns(t *testing.T) {
	var logs bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() { slog.SetDefault(old) })

	e := newEngine(t, &faultStore{Store: memstore.New(), completeErr: errors.New("connection reset")}, nil)
	if _, err := e.Run(t.Context(), "order-1", value("charged"), nil); !errors.Is(err, idem.ErrNotRecorded) {
		t.Fatalf("Run = %v, want ErrNotRecorded", err)
	}
	// A takeover, which the engine logs at info, must not reach the log.
	s := memstore.New()
	tookOver := 0
	taker := newEngine(t, s, &idem.Config{Observer: func(_ context.Context, ev observe.Event) {
		if ev.Kind == observe.Takeover {
			tookOver++
		}
	}})
	var storeKey string
	taker.Run(t.Context(), "order-2", func(ctx context.Context) ([]byte, error) {
		l, _ := idem.LeaseFrom(ctx)
		storeKey = l.StoreKey
		return nil, errors.New("transient")
	}, &idem.RunOptions{Retryable: func(error) bool { return true }})
	if cr, err := s.Claim(t.Context(), store.ClaimParams{Key: storeKey, Owner: "crashed", LeaseTTL: time.Millisecond, Retention: time.Hour}); err != nil || cr.Status != store.ClaimAcquired {
		t.Fatalf("plant a crashed holder: (%v, %v)", cr.Status, err)
	}
	time.Sleep(5 * time.Millisecond)
	if _, err := taker.Run(t.Context(), "order-2", value("v"), nil); err != nil || tookOver != 1 {
		t.Fatalf("Run over a crashed holder = %v with %d takeovers, want one takeover", err, tookOver)
	}
	if !strings.Contains(logs.String(), `"level":"ERROR"`) || !strings.Contains(logs.String(), "not recorded") {
		t.Errorf("default log %q: want the ERROR line for the lost outcome", logs.String())
	}
	if strings.Contains(logs.String(), `"level":"INFO"`) || strings.Contains(logs.String(), `"level":"DEBUG"`) {
		t.Errorf("default log %q: want warn and above only", logs.String())
	}
}

// TestObserverGetsTheCallersContext: the observer is called with the
// context the caller passed, so an adapter can find the caller's span.
func TestObserverGetsTheCallersContext(t *testing.T) {
	type marker struct{}
	var got []any
	e := newEngine(t, memstore.New(), &idem.Config{Observer: func(ctx context.Context, ev observe.Event) {
		got = append(got, ctx.Value(marker{}))
	}})
	ctx := context.WithValue(t.Context(), marker{}, "caller")
	for range 2 {
		if _, err := e.Run(ctx, "order-1", value("v"), nil); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 2 || got[0] != "caller" || got[1] != "caller" {
		t.Fatalf("observer contexts carried %v, want the caller's value on both events", got)
	}
}

// TestProviderKey: the key for a downstream provider is short, in
// [0-9a-f], the same for every holder of a key, and differs between keys
// and between namespaces.
func TestProviderKey(t *testing.T) {
	providerKey := func(e *idem.Engine, key string, retry bool) string {
		var pk string
		e.Run(t.Context(), key, func(ctx context.Context) ([]byte, error) {
			l, _ := idem.LeaseFrom(ctx)
			pk = l.ProviderKey()
			if retry {
				return nil, errors.New("transient")
			}
			return nil, nil
		}, &idem.RunOptions{Retryable: func(error) bool { return true }})
		return pk
	}
	a := newEngine(t, memstore.New(), &idem.Config{Namespace: "a"})
	b := newEngine(t, memstore.New(), &idem.Config{Namespace: "b"})
	first, again := providerKey(a, "order-1", true), providerKey(a, "order-1", false)
	if first != again {
		t.Errorf("provider key changed between holders of one key: %q then %q", first, again)
	}
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(first) {
		t.Errorf("provider key %q: want 32 characters of [0-9a-f]", first)
	}
	if other := providerKey(a, "order-2", false); other == first {
		t.Errorf("two keys share provider key %q", first)
	}
	if other := providerKey(b, "order-1", false); other == first {
		t.Errorf("two namespaces share provider key %q", first)
	}
}

func TestObserverSeesEachOutcome(t *testing.T) {
	var kinds []observe.Kind
	e := newEngine(t, memstore.New(), &idem.Config{Observer: func(_ context.Context, ev observe.Event) {
		if ev.Key == "" || strings.Contains(ev.Key, "order-1") {
			t.Errorf("event key %q: want the store key, never the raw key", ev.Key)
		}
		kinds = append(kinds, ev.Kind)
	}})
	errTransient := errors.New("transient")
	ctx := t.Context()
	e.Run(ctx, "order-1", value("v"), nil)
	e.Run(ctx, "order-1", value("v"), nil)
	e.Run(ctx, "order-1", value("v"), &idem.RunOptions{Fingerprint: "other"})
	e.Run(ctx, "order-2", func(context.Context) ([]byte, error) { return nil, errTransient },
		&idem.RunOptions{Retryable: func(error) bool { return true }})
	want := []observe.Kind{observe.Executed, observe.Replayed, observe.Mismatch, observe.Released}
	if fmt.Sprint(kinds) != fmt.Sprint(want) {
		t.Fatalf("events = %v, want %v", kinds, want)
	}
	if got := observe.LeaseLost.String(); got != "lease_lost" {
		t.Errorf("EventLeaseLost.String() = %q, want lease_lost", got)
	}
}

// TestReplayAllocations pins the replay path's allocations on memstore: the
// derived store key and the store's copy of the outcome, nothing else. A
// value escaping to the heap on that path shows up here first.
func TestReplayAllocations(t *testing.T) {
	e := newEngine(t, memstore.New(), nil)
	ctx := context.Background()
	if _, err := e.Run(ctx, "order-1", value("charged"), nil); err != nil {
		t.Fatal(err)
	}
	fn := mustNotRun(t)
	allocs := testing.AllocsPerRun(100, func() { e.Run(ctx, "order-1", fn, nil) })
	if allocs > 2 {
		t.Fatalf("a replay allocates %.1f times, want at most 2", allocs)
	}
}

// TestWaiterInProcessGetsReplayedError: a caller that waited in this
// process for the holder of its key gets the recorded error as a
// *ReplayedError, as a caller in another process would, never the
// holder's own error value.
func TestWaiterInProcessGetsReplayedError(t *testing.T) {
	e := newEngine(t, memstore.New(), nil)
	declined := errors.New("declined")
	started, finish := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	var holderErr error
	wg.Go(func() {
		_, holderErr = e.Run(t.Context(), "order-1", func(context.Context) ([]byte, error) {
			close(started)
			<-finish
			return nil, declined
		}, nil)
	})
	<-started
	var (
		waiter    idem.Result[[]byte]
		waiterErr error
	)
	wg.Go(func() { waiter, waiterErr = e.Run(t.Context(), "order-1", mustNotRun(t), nil) })
	time.Sleep(20 * time.Millisecond) // let the waiter join the holder's flight
	close(finish)
	wg.Wait()
	if holderErr != declined {
		t.Fatalf("holder got %v, want its own error", holderErr)
	}
	re, ok := errors.AsType[*idem.ReplayedError](waiterErr)
	if !ok || re.Message != "declined" || !waiter.Replayed || waiterErr == declined {
		t.Fatalf("waiter got (%+v, %#v), want a replayed *ReplayedError with the message", waiter, waiterErr)
	}
}
