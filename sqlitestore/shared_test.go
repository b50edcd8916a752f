package sqlitestore_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/sqlitestore"
	"github.com/idemhq/idem/store"
)

// Two *sql.DB handles on one file are how two processes look to SQLite:
// separate connections, separate Stores, separate in-process write locks,
// meeting only at the file's locks.

// TestTwoHandlesOneFile runs storms through engines on two handles of one
// file: fn runs exactly once per key, every caller of a key sees one value,
// and in transactional mode each key has exactly one business row.
func TestTwoHandlesOneFile(t *testing.T) {
	dir := t.TempDir()
	cfg := &sqlitestore.Config{PollInterval: 20 * time.Millisecond}
	dbA, dbB := openDB(t, dir, "shared.db"), openDB(t, dir, "shared.db")
	stores := []*sqlitestore.Store{newStore(t, dbA, cfg), newStore(t, dbB, cfg)}
	createBusiness(t, dbA)
	var engines []*idem.Engine
	for i := range 4 {
		e, err := idem.New(stores[i%2], nil)
		if err != nil {
			t.Fatal(err)
		}
		engines = append(engines, e)
	}

	const goroutines, keys = 32, 40
	storm := func(t *testing.T, run func(e *idem.Engine, key string, executions *atomic.Int32) (idem.Result[[]byte], error)) [keys]int32 {
		prefix := rand.Text()
		var (
			executions [keys]atomic.Int32
			mu         sync.Mutex
			seen       [keys]map[string]bool
			wg         sync.WaitGroup
		)
		for k := range seen {
			seen[k] = map[string]bool{}
		}
		for g := range goroutines {
			wg.Go(func() {
				for i := range keys {
					k := (i + g) % keys
					res, err := run(engines[g%len(engines)], prefix+strconv.Itoa(k), &executions[k])
					if err != nil {
						t.Errorf("key %d: %v", k, err)
						continue
					}
					mu.Lock()
					seen[k][string(res.Value)] = true
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		var counts [keys]int32
		for k := range keys {
			counts[k] = executions[k].Load()
			if len(seen[k]) != 1 {
				t.Errorf("key %d: callers saw %d different values, want 1", k, len(seen[k]))
			}
		}
		return counts
	}

	t.Run("Run", func(t *testing.T) {
		counts := storm(t, func(e *idem.Engine, key string, executions *atomic.Int32) (idem.Result[[]byte], error) {
			return e.Run(t.Context(), key, func(context.Context) ([]byte, error) {
				n := executions.Add(1)
				time.Sleep(time.Millisecond) // overlap the callers
				return fmt.Appendf(nil, "%s by execution %d", key, n), nil
			}, nil)
		})
		for k, n := range counts {
			if n != 1 {
				t.Errorf("key %d: fn ran %d times, want 1", k, n)
			}
		}
	})

	t.Run("RunTx", func(t *testing.T) {
		var keysSeen sync.Map
		counts := storm(t, func(e *idem.Engine, key string, executions *atomic.Int32) (idem.Result[[]byte], error) {
			keysSeen.Store(key, true)
			return idem.RunTx(t.Context(), e, key, func(ctx context.Context, tx *sql.Tx) ([]byte, error) {
				n := executions.Add(1)
				if err := insertRow(ctx, tx, key); err != nil {
					return nil, err
				}
				return fmt.Appendf(nil, "%s by execution %d", key, n), nil
			}, nil)
		})
		for k, n := range counts {
			if n < 1 {
				t.Errorf("key %d: fn never ran", k)
			}
		}
		keysSeen.Range(func(key, _ any) bool {
			if n, err := countRows(t.Context(), dbB, key.(string)); err != nil || n != 1 {
				t.Errorf("key %s: %d business rows (%v), want 1", key, n, err)
			}
			return true
		})
	})
}

// TestWaitSeesAnotherHandle: a waiter on one handle is not notified of a
// change made through another, and sees it at its next poll.
func TestWaitSeesAnotherHandle(t *testing.T) {
	dir := t.TempDir()
	const poll = 50 * time.Millisecond
	holder := newStore(t, openDB(t, dir, "shared.db"), nil)
	waiter := newStore(t, openDB(t, dir, "shared.db"), &sqlitestore.Config{PollInterval: poll})
	p := store.ClaimParams{Key: "test/" + rand.Text(), Owner: "a", LeaseTTL: time.Minute, Retention: time.Hour}
	cr, err := holder.Claim(t.Context(), p)
	if err != nil || cr.Status != store.ClaimAcquired {
		t.Fatalf("Claim = %v, %v; want acquired", cr.Status, err)
	}
	woken := make(chan error, 1)
	go func() { woken <- waiter.Wait(t.Context(), p.Key, cr.Lease.Fence) }()
	select {
	case err := <-woken:
		t.Fatalf("Wait returned %v while the lease was held", err)
	case <-time.After(3 * poll):
	}
	if err := holder.Complete(t.Context(), cr.Lease, []byte("done")); err != nil {
		t.Fatal(err)
	}
	completed := time.Now()
	select {
	case err := <-woken:
		if err != nil {
			t.Fatalf("Wait = %v, want nil", err)
		}
		if d := time.Since(completed); d > poll+time.Second {
			t.Errorf("Wait returned %s after the completion, want within about one poll (%s)", d, poll)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wait on another handle never saw the completion")
	}
}

const crashEnv = "SQLITESTORE_TEST_CRASH_DB"

// TestCrashChild is the process TestCrashMidTransaction kills: it claims
// a key in a transaction, writes a business row, says so, and waits to be
// killed.
func TestCrashChild(t *testing.T) {
	path := os.Getenv(crashEnv)
	if path == "" {
		t.Skip("run by TestCrashMidTransaction")
	}
	db := openDB(t, filepath.Dir(path), filepath.Base(path))
	e, err := idem.New(newStore(t, db, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	idem.RunTx(t.Context(), e, "order-1", func(ctx context.Context, tx *sql.Tx) ([]byte, error) {
		if err := insertRow(ctx, tx, "order-1"); err != nil {
			return nil, err
		}
		fmt.Println("inserted")
		time.Sleep(time.Minute) // killed long before
		return nil, errors.New("not killed")
	}, nil)
	t.Fatal("the child was not killed while fn ran")
}

// TestCrashMidTransaction kills a process (SIGKILL) while fn runs in its
// transaction, after fn wrote: neither the write nor the record survives,
// and the retry, in another process, applies the effect once.
func TestCrashMidTransaction(t *testing.T) {
	if os.Getenv(crashEnv) != "" {
		t.Skip("in the child")
	}
	path := filepath.Join(t.TempDir(), "crash.db")
	db := openDB(t, filepath.Dir(path), filepath.Base(path))
	s := newStore(t, db, nil)
	createBusiness(t, db)

	child := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	child.Env = append(os.Environ(), crashEnv+"="+path)
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(out)
	inserted := false
	for !inserted && lines.Scan() {
		inserted = lines.Text() == "inserted"
	}
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	child.Wait()
	if !inserted {
		t.Fatal("the child ended before its fn wrote")
	}

	var records int
	if err := db.QueryRowContext(t.Context(), "SELECT count(*) FROM idem_records").Scan(&records); err != nil {
		t.Fatal(err)
	}
	if n, err := countRows(t.Context(), db, "order-1"); err != nil || n != 0 || records != 0 {
		t.Fatalf("after the crash: %d business rows (%v) and %d records, want none", n, err, records)
	}
	e, err := idem.New(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, wantReplayed := range []bool{false, true} {
		res, err := idem.RunTx(t.Context(), e, "order-1", func(ctx context.Context, tx *sql.Tx) ([]byte, error) {
			return []byte("charged"), insertRow(ctx, tx, "order-1")
		}, nil)
		if err != nil || res.Replayed != wantReplayed || string(res.Value) != "charged" {
			t.Fatalf("retry %d: RunTx = (%q, replayed %t, %v), want (charged, %t, nil)", i, res.Value, res.Replayed, err, wantReplayed)
		}
	}
	if n, err := countRows(t.Context(), db, "order-1"); err != nil || n != 1 {
		t.Fatalf("after the retry: %d business rows (%v), want 1", n, err)
	}
}
