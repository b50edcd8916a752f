package integration_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/memstore"
	"github.com/idemhq/idem/sqlitestore"
	"github.com/idemhq/idem/store"
)

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

// leaseOwners counts the leases a store granted, by owner token.
type leaseOwners struct {
	mu sync.Mutex
	n  map[string]int
}

// granted counts a lease the store granted to p.Owner.
func (o *leaseOwners) granted(p store.ClaimParams, cr store.ClaimResult, err error) {
	if err != nil || cr.Status != store.ClaimAcquired {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.n == nil {
		o.n = map[string]int{}
	}
	o.n[p.Owner]++
}

// checkUnique fails t unless leases were granted and every owner held one.
func (o *leaseOwners) checkUnique(t *testing.T) {
	t.Helper()
	if len(o.n) == 0 {
		t.Fatal("no lease was granted")
	}
	for owner, n := range o.n {
		if n > 1 {
			t.Errorf("owner %q held %d leases, want 1", owner, n)
		}
	}
	t.Logf("%d leases, each with its own owner", len(o.n))
}

// ownerSpy is a store that counts the leases it grants, by owner.
type ownerSpy struct {
	store.Store
	owners *leaseOwners
}

func (s ownerSpy) Claim(ctx context.Context, p store.ClaimParams) (store.ClaimResult, error) {
	cr, err := s.Store.Claim(ctx, p)
	s.owners.granted(p, cr, err)
	return cr, err
}

// txOwnerSpy is ownerSpy for a TxStore, counting the leases BeginClaim
// grants too, whether their transaction commits or not.
type txOwnerSpy struct {
	*sqlitestore.Store
	owners *leaseOwners
}

func (s txOwnerSpy) Claim(ctx context.Context, p store.ClaimParams) (store.ClaimResult, error) {
	cr, err := s.Store.Claim(ctx, p)
	s.owners.granted(p, cr, err)
	return cr, err
}

func (s txOwnerSpy) BeginClaim(ctx context.Context, p store.ClaimParams, maxWait time.Duration) (*sql.Tx, store.ClaimResult, error) {
	tx, cr, err := s.Store.BeginClaim(ctx, p, maxWait)
	s.owners.granted(p, cr, err)
	return tx, cr, err
}

// TestOwnersAreUniquePerLease: owner tokens of claims that did not acquire
// are handed on to later calls, so the engine must never hand one token to
// two leases. Replays, mismatches, transient errors and new keys race on
// few keys; every lease the store grants must have an owner of its own.
func TestOwnersAreUniquePerLease(t *testing.T) {
	var owners leaseOwners
	e := newEngine(t, ownerSpy{memstore.New(), &owners}, nil)
	errTransient := errors.New("transient")
	fn := func(fail bool) func(context.Context) ([]byte, error) {
		return func(ctx context.Context) ([]byte, error) {
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
	db, err := sqlitestore.OpenDB(t.Context(), filepath.Join(t.TempDir(), "idem.db"))
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
	var owners leaseOwners
	e := newEngine(t, txOwnerSpy{s, &owners}, nil)
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
					idem.RunTx(t.Context(), e, fmt.Sprint("panic-", g, "-", i), func(context.Context, *sql.Tx) ([]byte, error) {
						panic("boom")
					}, nil)
				}()
				e.Run(t.Context(), fmt.Sprint("fresh-", g, "-", i), value("v"), nil)
			}
		})
	}
	wg.Wait()
	owners.checkUnique(t)
}
