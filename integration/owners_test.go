package integration_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/memstore"
	"github.com/idemhq/idem/sqlitestore"
)

func newEngine(t testing.TB, s idem.Store, cfg *idem.Config) *idem.Engine {
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

// leaseOwners counts the leases fn ran under, by owner.
type leaseOwners struct {
	mu sync.Mutex
	n  map[string]int
}

// note counts the lease fn runs under, from its context.
func (o *leaseOwners) note(ctx context.Context) {
	l, _ := idem.LeaseFrom(ctx)
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.n == nil {
		o.n = map[string]int{}
	}
	o.n[l.Owner]++
}

// checkUnique fails t unless fn ran and every owner held one lease.
func (o *leaseOwners) checkUnique(t *testing.T) {
	t.Helper()
	if len(o.n) == 0 {
		t.Fatal("fn never ran")
	}
	for owner, n := range o.n {
		if n > 1 {
			t.Errorf("owner %q held %d leases, want 1", owner, n)
		}
	}
	t.Logf("%d leases, each with its own owner", len(o.n))
}

// TestOwnersAreUniquePerLease: owner tokens of claims that did not acquire
// are handed on to later calls, so the engine must never hand one token to
// two leases. Replays, mismatches, transient errors and new keys race on
// few keys; every lease fn ran under must have an owner of its own.
func TestOwnersAreUniquePerLease(t *testing.T) {
	e := newEngine(t, memstore.New(), nil)
	errTransient := errors.New("transient")
	var owners leaseOwners
	fn := func(fail bool) func(context.Context) ([]byte, error) {
		return func(ctx context.Context) ([]byte, error) {
			owners.note(ctx)
			if fail {
				return nil, errTransient
			}
			return []byte("v"), nil
		}
	}
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 300 {
				key := fmt.Sprint("key-", (g*7+i)%500)
				opts := &idem.RunOptions{
					Fingerprint: fmt.Sprint((g * i) % 3),
					Retryable:   func(err error) bool { return errors.Is(err, errTransient) },
				}
				e.Run(t.Context(), key, fn(i%5 == 0), opts)
			}
		})
	}
	wg.Wait()
	owners.checkUnique(t)
}

// TestOwnersAreUniquePerLeaseTx is TestOwnersAreUniquePerLease with RunTx
// in the mix, on a real TxStore: RunTx works on a copy of its call, and a
// token the copy spent must not go back to the spares, also when fn
// panics.
func TestOwnersAreUniquePerLeaseTx(t *testing.T) {
	db, err := sqlitestore.Open(t.Context(), filepath.Join(t.TempDir(), "idem.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := sqlitestore.New(db, &sqlitestore.Config{ReapInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	e := newEngine(t, s, nil)
	var owners leaseOwners
	// Replays leave unspent tokens in the spares of every flight shard;
	// panicking RunTx calls and fresh Runs then take them.
	const done = 1024
	for i := range done {
		if _, err := e.Run(t.Context(), fmt.Sprint("done-", i), value("v"), nil); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 150 {
				e.Run(t.Context(), fmt.Sprint("done-", (g*131+i*7)%done), mustNotRun(t), nil)
				func() {
					defer func() { recover() }()
					idem.RunTx(t.Context(), e, fmt.Sprint("panic-", g, "-", i), func(ctx context.Context, _ *sql.Tx) ([]byte, error) {
						owners.note(ctx)
						panic("boom")
					}, nil)
				}()
				e.Run(t.Context(), fmt.Sprint("fresh-", g, "-", i), func(ctx context.Context) ([]byte, error) {
					owners.note(ctx)
					return []byte("v"), nil
				}, nil)
			}
		})
	}
	wg.Wait()
	owners.checkUnique(t)
}
