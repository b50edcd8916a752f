package storetest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/store"
)

// Durations of the suite. Short leases are long enough to survive a loaded
// CI machine between two calls, and short enough to expire quickly.
const (
	longLease     = 30 * time.Second
	shortLease    = 200 * time.Millisecond
	longRetention = time.Hour
	pollEvery     = 20 * time.Millisecond
	patience      = 10 * time.Second // how long to poll for something that must happen
	// prompt is how soon a woken waiter must return: long enough for a
	// loaded CI machine (every package's tests at once, under the race
	// detector), short enough that a store which polls instead of
	// notifying fails unless it polls more often than the suite allows.
	prompt = 2 * time.Second
)

// newKey returns a store key in the engine's shape, unique to this test
// run, so subtests sharing a store never meet.
func newKey(t *testing.T) string {
	t.Helper()
	var salt [8]byte
	rand.Read(salt[:])
	sum := sha256.Sum256(append([]byte(t.Name()), salt[:]...))
	return "storetest/" + hex.EncodeToString(sum[:])
}

// params returns ClaimParams with the suite's defaults.
func params(key, owner, fingerprint string, lease time.Duration) store.ClaimParams {
	return store.ClaimParams{Key: key, Owner: owner, Fingerprint: fingerprint, LeaseTTL: lease, Retention: longRetention}
}

// claim claims p, sent now as the engine sends its claims.
func claim(t *testing.T, s store.Store, p store.ClaimParams) store.ClaimResult {
	t.Helper()
	p.Sent = time.Now()
	cr, err := s.Claim(t.Context(), p)
	if err != nil {
		t.Fatalf("Claim(%s, owner %q): %v", p.Key, p.Owner, err)
	}
	return cr
}

// acquire claims p and fails the test unless it acquired the lease.
func acquire(t *testing.T, s store.Store, p store.ClaimParams) store.Lease {
	t.Helper()
	cr := claim(t, s, p)
	if cr.Status != store.ClaimAcquired {
		t.Fatalf("Claim(owner %q) = %v, want acquired", p.Owner, cr.Status)
	}
	if cr.Lease.Key != p.Key || cr.Lease.Owner != p.Owner || cr.Lease.Fence <= 0 {
		t.Fatalf("Claim(owner %q) lease = %+v, want key %s, owner %q and a positive fence", p.Owner, cr.Lease, p.Key, p.Owner)
	}
	return cr.Lease
}

// wantStatus claims p and fails the test unless the status is want.
func wantStatus(t *testing.T, s store.Store, p store.ClaimParams, want store.ClaimStatus) store.ClaimResult {
	t.Helper()
	cr := claim(t, s, p)
	if cr.Status != want {
		t.Fatalf("Claim(owner %q) = %v, want %v", p.Owner, cr.Status, want)
	}
	return cr
}

// awaitAcquire claims p until it acquires the lease, polling within patience.
func awaitAcquire(t *testing.T, s store.Store, p store.ClaimParams) store.ClaimResult {
	t.Helper()
	deadline := time.Now().Add(patience)
	for {
		cr := claim(t, s, p)
		if cr.Status == store.ClaimAcquired {
			return cr
		}
		if cr.Status != store.ClaimInFlight {
			t.Fatalf("Claim(owner %q) while waiting for expiry = %v, want in flight then acquired", p.Owner, cr.Status)
		}
		if time.Now().After(deadline) {
			t.Fatalf("Claim(owner %q) still in flight after %s; the lease never expired", p.Owner, patience)
		}
		time.Sleep(pollEvery)
	}
}

func complete(t *testing.T, s store.Store, l store.Lease, outcome []byte) {
	t.Helper()
	if err := s.Complete(t.Context(), l, outcome); err != nil {
		t.Fatalf("Complete(fence %d): %v", l.Fence, err)
	}
}

func release(t *testing.T, s store.Store, l store.Lease) {
	t.Helper()
	if err := s.Release(t.Context(), l); err != nil {
		t.Fatalf("Release(fence %d): %v", l.Fence, err)
	}
}

// wantLeaseLost checks that renew, complete and release by l are all
// refused with idem.ErrLeaseLost.
func wantLeaseLost(t *testing.T, s store.Store, l store.Lease) {
	t.Helper()
	ctx := t.Context()
	if err := s.Renew(ctx, l); !errors.Is(err, idem.ErrLeaseLost) {
		t.Errorf("Renew(stale lease %+v) = %v, want ErrLeaseLost", l, err)
	}
	if err := s.Complete(ctx, l, []byte("stale")); !errors.Is(err, idem.ErrLeaseLost) {
		t.Errorf("Complete(stale lease %+v) = %v, want ErrLeaseLost", l, err)
	}
	if err := s.Release(ctx, l); !errors.Is(err, idem.ErrLeaseLost) {
		t.Errorf("Release(stale lease %+v) = %v, want ErrLeaseLost", l, err)
	}
}

// waitAsync starts s.Wait in a goroutine and returns a channel that yields
// its error.
func waitAsync(ctx context.Context, s store.Store, key string, fence int64) <-chan error {
	done := make(chan error, 1)
	go func() { done <- s.Wait(ctx, key, fence) }()
	return done
}

// blockedWaiter claims a new key on a long lease and starts a waiter on it.
// It returns once the waiter has had time to register, or, if Wait did not
// block, with its error (an error saying "nil" if it returned nil).
func blockedWaiter(t *testing.T, s store.Store) (store.Lease, <-chan error, error) {
	t.Helper()
	a := acquire(t, s, params(newKey(t), "a", "fp", longLease))
	woken := waitAsync(t.Context(), s, a.Key, a.Fence)
	time.Sleep(100 * time.Millisecond) // let the waiter register; correctness does not depend on it
	select {
	case err := <-woken:
		if err == nil {
			err = errors.New("nil")
		}
		return a, nil, err
	default:
		return a, woken, nil
	}
}

// wantWoken fails unless the waiter returns nil within prompt.
func wantWoken(t *testing.T, woken <-chan error, after string) {
	t.Helper()
	select {
	case err := <-woken:
		if err != nil {
			t.Fatalf("Wait = %v, want nil", err)
		}
	case <-time.After(prompt):
		t.Fatalf("Wait not woken within %s of %s (lease %s)", prompt, after, longLease)
	}
}

// newEngine returns an engine on s in a namespace of its own.
func newEngine(t *testing.T, s store.Store, cfg idem.Config) *idem.Engine {
	t.Helper()
	if cfg.Namespace == "" {
		cfg.Namespace = "storetest"
	}
	e, err := idem.New(s, &cfg)
	if err != nil {
		t.Fatalf("idem.New: %v", err)
	}
	return e
}

// newRunKey returns a caller key unique to this test run.
func newRunKey(t *testing.T) string {
	t.Helper()
	return t.Name() + "/" + rand.Text()
}
