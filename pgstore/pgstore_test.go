package pgstore_test

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/internal/testenv"
	"github.com/idemhq/idem/pgstore"
	"github.com/idemhq/idem/store"
	"github.com/idemhq/idem/storetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newPool connects to the test database, with room for the storms.
func newPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(testenv.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 32
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// newStore returns a migrated store in a schema of its own, dropped when
// the test ends.
func newStore(t testing.TB, pool *pgxpool.Pool, cfg pgstore.Config) *pgstore.Store {
	t.Helper()
	if cfg.Schema == "" {
		cfg.Schema = "idemtest_" + strings.ToLower(rand.Text()[:12])
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = time.Minute // wake-ups must come from NOTIFY
	}
	s, err := pgstore.New(t.Context(), pool, &cfg)
	if err != nil {
		t.Fatalf("pgstore.New: %v", err)
	}
	t.Cleanup(func() {
		s.Close()
		if _, err := pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{cfg.Schema}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", cfg.Schema, err)
		}
	})
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	pool := newPool(t)
	s := newStore(t, pool, pgstore.Config{})
	storetest.Run(t, func(*testing.T) store.Store { return s })
}

// businessRows is a caller's table in the store's database.
func businessRows(t *testing.T, pool *pgxpool.Pool) storetest.Rows[pgx.Tx] {
	t.Helper()
	table := pgx.Identifier{"idemtest_business_" + strings.ToLower(rand.Text()[:12])}.Sanitize()
	if _, err := pool.Exec(t.Context(), "CREATE TABLE "+table+" (id text NOT NULL, n serial)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pool.Exec(context.Background(), "DROP TABLE "+table) })
	return storetest.Rows[pgx.Tx]{
		Insert: func(ctx context.Context, tx pgx.Tx, id string) error {
			_, err := tx.Exec(ctx, "INSERT INTO "+table+" (id) VALUES ($1)", id)
			return err
		},
		Count: func(ctx context.Context, id string) (n int, err error) {
			err = pool.QueryRow(ctx, "SELECT count(*) FROM "+table+" WHERE id = $1", id).Scan(&n)
			return n, err
		},
	}
}

// txEngine returns an engine on a new store with cfg, and a table of
// business rows for fn to write in its transaction.
func txEngine(t *testing.T, cfg pgstore.Config) (*pgxpool.Pool, storetest.Rows[pgx.Tx], *idem.Engine) {
	t.Helper()
	pool := newPool(t)
	s := newStore(t, pool, cfg)
	e, err := idem.New(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	return pool, businessRows(t, pool), e
}

func TestConformanceTx(t *testing.T) {
	pool := newPool(t)
	s := newStore(t, pool, pgstore.Config{})
	storetest.RunTx(t, func(*testing.T) store.TxStore[pgx.Tx] { return s }, businessRows(t, pool))
}

// TestKilledBackendMidTransaction kills the backend of a transaction while
// fn runs in it: neither the row nor the record survives, and the retry
// writes the row once.
func TestKilledBackendMidTransaction(t *testing.T) {
	pool, rows, e := txEngine(t, pgstore.Config{})
	const key = "order-1"
	_, err := idem.RunTx(t.Context(), e, key, func(ctx context.Context, tx pgx.Tx) ([]byte, error) {
		if err := rows.Insert(ctx, tx, key); err != nil {
			return nil, err
		}
		var pid int
		if err := tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
			return nil, err
		}
		if _, err := pool.Exec(ctx, "SELECT pg_terminate_backend($1)", pid); err != nil {
			return nil, err
		}
		return []byte("too late"), nil
	}, nil)
	se, ok := errors.AsType[*idem.StoreError](err)
	if !ok || se.Op != "commit" || !se.Executed {
		t.Fatalf("RunTx on a killed backend = %v, want a *StoreError{Op: commit, Executed: true}", err)
	}
	if n, _ := rows.Count(t.Context(), key); n != 0 {
		t.Fatalf("rows after the killed transaction = %d, want 0", n)
	}
	res, err := idem.RunTx(t.Context(), e, key, func(ctx context.Context, tx pgx.Tx) ([]byte, error) {
		return []byte("retried"), rows.Insert(ctx, tx, key)
	}, nil)
	if err != nil || res.Replayed || string(res.Value) != "retried" {
		t.Fatalf("retry = (%q, replayed %t, %v), want a fresh run", res.Value, res.Replayed, err)
	}
	if n, _ := rows.Count(t.Context(), key); n != 1 {
		t.Fatalf("rows after the retry = %d, want 1", n)
	}
}

// TestDeadlockIsRetried makes two transactions lock two rows in opposite
// orders. PostgreSQL aborts one with a deadlock; RunTx reruns it, and both
// commit, each once.
func TestDeadlockIsRetried(t *testing.T) {
	pool := newPool(t)
	s := newStore(t, pool, pgstore.Config{})
	e, err := idem.New(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	table := pgx.Identifier{"idemtest_accounts_" + strings.ToLower(rand.Text()[:12])}.Sanitize()
	if _, err := pool.Exec(t.Context(), "CREATE TABLE "+table+" (id text PRIMARY KEY, n int NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pool.Exec(context.Background(), "DROP TABLE "+table) })
	if _, err := pool.Exec(t.Context(), "INSERT INTO "+table+" VALUES ('a', 0), ('b', 0)"); err != nil {
		t.Fatal(err)
	}
	var (
		barrier sync.WaitGroup
		once    [2]sync.Once
		wg      sync.WaitGroup
		runs    [2]int
	)
	barrier.Add(2)
	transfer := func(i int, first, second string) {
		defer wg.Done()
		_, err := idem.RunTx(t.Context(), e, "transfer-"+first, func(ctx context.Context, tx pgx.Tx) ([]byte, error) {
			runs[i]++
			if _, err := tx.Exec(ctx, "UPDATE "+table+" SET n = n + 1 WHERE id = $1", first); err != nil {
				return nil, err
			}
			once[i].Do(func() { barrier.Done(); barrier.Wait() }) // both hold their first lock
			_, err := tx.Exec(ctx, "UPDATE "+table+" SET n = n + 1 WHERE id = $1", second)
			return nil, err
		}, nil)
		if err != nil {
			t.Errorf("transfer %s→%s: %v", first, second, err)
		}
	}
	wg.Add(2)
	go transfer(0, "a", "b")
	go transfer(1, "b", "a")
	wg.Wait()
	if runs[0]+runs[1] != 3 {
		t.Errorf("fn ran %v times, want one rerun in all: one deadlock victim", runs)
	}
	var a, b int
	if err := pool.QueryRow(t.Context(), "SELECT (SELECT n FROM "+table+" WHERE id = 'a'), (SELECT n FROM "+table+" WHERE id = 'b')").Scan(&a, &b); err != nil {
		t.Fatal(err)
	}
	if a != 2 || b != 2 {
		t.Fatalf("balances a=%d b=%d, want 2 and 2: each transfer committed once", a, b)
	}
}

func TestMigrateIsIdempotentAndConcurrent(t *testing.T) {
	pool := newPool(t)
	s := newStore(t, pool, pgstore.Config{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if err := s.Migrate(t.Context()); err != nil {
				t.Errorf("concurrent Migrate: %v", err)
			}
		})
	}
	wg.Wait()
}

func TestClaimBeforeMigrateSaysWhatToDo(t *testing.T) {
	pool := newPool(t)
	schema := "idemtest_" + strings.ToLower(rand.Text()[:12])
	s, err := pgstore.New(t.Context(), pool, &pgstore.Config{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.Claim(t.Context(), store.ClaimParams{Key: "k", Owner: "o", LeaseTTL: time.Second, Retention: time.Hour})
	if err == nil || !strings.Contains(err.Error(), "Migrate") {
		t.Fatalf("Claim before Migrate = %v, want an error that says to call Migrate", err)
	}
}

func TestNewValidatesConfig(t *testing.T) {
	pool := newPool(t)
	for _, cfg := range []pgstore.Config{
		{Schema: "Upper"},
		{Schema: "semi;colon"},
		{OpTimeout: -time.Second},
	} {
		if _, err := pgstore.New(t.Context(), pool, &cfg); err == nil {
			t.Errorf("New(%+v) = nil error, want one", cfg)
		}
	}
}

// TestReapDeletesExpiredRecordsInBatches checks that a sweep, three keys a
// batch, keeps live leases and unexpired outcomes and deletes the rest.
func TestReapDeletesExpiredRecordsInBatches(t *testing.T) {
	pool := newPool(t)
	s := newStore(t, pool, pgstore.Config{ReapInterval: -1, ReapBatch: 3})
	ctx := t.Context()
	claim := func(key string, lease, retention time.Duration) store.Lease {
		cr, err := s.Claim(ctx, store.ClaimParams{Key: key, Owner: "o", LeaseTTL: lease, Retention: retention})
		if err != nil || cr.Status != store.ClaimAcquired {
			t.Fatalf("Claim(%s) = (%v, %v)", key, cr.Status, err)
		}
		return cr.Lease
	}
	for i := range 7 { // expire at once: completed with a 1ms retention
		l := claim("short-"+string(rune('a'+i)), time.Minute, time.Millisecond)
		if err := s.Complete(ctx, l, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	claim("live", time.Minute, time.Millisecond) // in progress: kept by its lease
	kept := claim("kept", time.Minute, time.Hour)
	if err := s.Complete(ctx, kept, []byte("x")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if n, err := s.Reap(ctx); err != nil || n != 7 {
		t.Fatalf("Reap() = %d, %v; want 7 expired records deleted", n, err)
	}
	if n, err := s.Reap(ctx); err != nil || n != 0 {
		t.Fatalf("Reap() again = %d, %v; want nothing left to delete", n, err)
	}
	for _, key := range []string{"live", "kept"} {
		cr, err := s.Claim(ctx, store.ClaimParams{Key: key, Owner: "p", LeaseTTL: time.Minute, Retention: time.Hour})
		if err != nil || cr.Status == store.ClaimAcquired {
			t.Fatalf("Claim(%s) after reaping = (%v, %v), want the record still there", key, cr.Status, err)
		}
	}
}

// TestReapSkipsRecordsInUse: a sweep neither waits for nor deletes an
// expired record that an open transaction holds (a RunTx taking it over,
// say); once the transaction ends, the next sweep deletes it.
func TestReapSkipsRecordsInUse(t *testing.T) {
	pool := newPool(t)
	schema := "idemtest_" + strings.ToLower(rand.Text()[:12])
	s := newStore(t, pool, pgstore.Config{Schema: schema, ReapInterval: -1, ReapBatch: 2})
	ctx := t.Context()
	for _, key := range []string{"a", "b", "c"} {
		cr, err := s.Claim(ctx, store.ClaimParams{Key: key, Owner: "o", LeaseTTL: time.Minute, Retention: time.Millisecond})
		if err != nil || cr.Status != store.ClaimAcquired {
			t.Fatalf("Claim(%s) = (%v, %v)", key, cr.Status, err)
		}
		if err := s.Complete(ctx, cr.Lease, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(20 * time.Millisecond)
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	table := pgx.Identifier{schema, "idem_records"}.Sanitize()
	if _, err := tx.Exec(ctx, "SELECT FROM "+table+" WHERE key = 'b' FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	reapCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if n, err := s.Reap(reapCtx); err != nil || n != 2 {
		t.Fatalf("Reap() with b held = %d, %v; want a and c deleted, b skipped", n, err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Reap(ctx); err != nil || n != 1 {
		t.Fatalf("Reap() after b was let go = %d, %v; want b deleted", n, err)
	}
}

// TestRunTxOwnsItsTransaction: fn cannot end the transaction RunTx commits
// for it, and a transaction kept past fn is closed.
func TestRunTxOwnsItsTransaction(t *testing.T) {
	_, rows, e := txEngine(t, pgstore.Config{})
	var kept pgx.Tx
	res, err := idem.RunTx(t.Context(), e, "order-1", func(ctx context.Context, tx pgx.Tx) ([]byte, error) {
		kept = tx
		if err := rows.Insert(ctx, tx, "order-1"); err != nil {
			return nil, err
		}
		if err := tx.Commit(ctx); err == nil {
			return nil, errors.New("fn committed the transaction itself")
		}
		if err := tx.Rollback(ctx); err == nil {
			return nil, errors.New("fn rolled the transaction back itself")
		}
		return []byte("ok"), nil
	}, nil)
	if err != nil || string(res.Value) != "ok" {
		t.Fatalf("RunTx = (%q, %v), want ok", res.Value, err)
	}
	if n, _ := rows.Count(t.Context(), "order-1"); n != 1 {
		t.Fatalf("rows = %d, want 1", n)
	}
	if _, err := kept.Exec(t.Context(), "SELECT 1"); !errors.Is(err, pgx.ErrTxClosed) {
		t.Fatalf("Exec on the transaction after RunTx = %v, want ErrTxClosed", err)
	}
	if err := kept.QueryRow(t.Context(), "SELECT 1").Scan(new(int)); !errors.Is(err, pgx.ErrTxClosed) {
		t.Fatalf("QueryRow on the transaction after RunTx = %v, want ErrTxClosed", err)
	}
}

// TestCommitRollsBackWithoutItsClaim: the outcome and the COMMIT travel
// together, so if the claim is no longer the transaction's when the outcome
// is recorded (here fn itself moves the fence), the COMMIT must roll fn's
// writes back instead of committing them without their record.
func TestCommitRollsBackWithoutItsClaim(t *testing.T) {
	schema := "idemtest_" + strings.ToLower(rand.Text()[:12])
	_, rows, e := txEngine(t, pgstore.Config{Schema: schema})
	table := pgx.Identifier{schema, "idem_records"}.Sanitize()
	_, err := idem.RunTx(t.Context(), e, "order-1", func(ctx context.Context, tx pgx.Tx) ([]byte, error) {
		if err := rows.Insert(ctx, tx, "order-1"); err != nil {
			return nil, err
		}
		l, _ := idem.LeaseFrom(ctx)
		_, err := tx.Exec(ctx, "UPDATE "+table+" SET fence = fence + 1 WHERE key = $1", l.StoreKey)
		return []byte("ok"), err
	}, nil)
	se, ok := errors.AsType[*idem.StoreError](err)
	if !ok || se.Op != "commit" || !errors.Is(err, idem.ErrLeaseLost) {
		t.Fatalf("RunTx = %v, want a commit StoreError wrapping ErrLeaseLost", err)
	}
	if n, _ := rows.Count(t.Context(), "order-1"); n != 0 {
		t.Fatalf("rows = %d, want 0: fn's writes committed without their outcome", n)
	}
	res, err := idem.RunTx(t.Context(), e, "order-1", func(ctx context.Context, tx pgx.Tx) ([]byte, error) {
		return []byte("again"), rows.Insert(ctx, tx, "order-1")
	}, nil)
	if err != nil || res.Replayed || string(res.Value) != "again" {
		t.Fatalf("retry = (%q, replayed %t, %v), want a fresh run", res.Value, res.Replayed, err)
	}
}

// TestListenerReconnectWakesWaiters terminates the store's LISTEN backend
// under a blocked waiter (storetest.RunNotificationLoss). Polls are a
// minute apart (newStore), so only the listener can wake waiters in time.
func TestListenerReconnectWakesWaiters(t *testing.T) {
	pool := newPool(t)
	schema := "idemtest_" + strings.ToLower(rand.Text()[:12])
	var log testenv.SyncBuffer
	s := newStore(t, pool, pgstore.Config{Schema: schema, ReapInterval: -1, Logger: slog.New(slog.NewTextHandler(&log, nil))})
	listen := "LISTEN " + pgx.Identifier{"idem_" + schema}.Sanitize()
	listener := func(t *testing.T) (pid int) {
		err := pool.QueryRow(t.Context(), "SELECT pid FROM pg_stat_activity WHERE query = $1 AND state = 'idle'", listen).Scan(&pid)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			t.Fatal(err)
		}
		return pid
	}
	var dropped int
	drop := func(t *testing.T) {
		if dropped = listener(t); dropped == 0 {
			t.Fatalf("no backend runs %q", listen)
		}
		if _, err := pool.Exec(t.Context(), "SELECT pg_terminate_backend($1)", dropped); err != nil {
			t.Fatal(err)
		}
	}
	back := func(t *testing.T) bool {
		pid := listener(t)
		return pid != 0 && pid != dropped
	}
	storetest.RunNotificationLoss(t, s, drop, back)
	// The warning says why the connection was lost.
	if got := log.String(); !strings.Contains(got, "LISTEN connection lost") || strings.Contains(got, "error=<nil>") {
		t.Errorf("log = %q, want the lost connection's warning with its error", got)
	}
}
