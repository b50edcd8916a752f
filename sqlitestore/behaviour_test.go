package sqlitestore_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/sqlitestore"
	"github.com/idemhq/idem/store"
)

func newKey() string { return "test/" + rand.Text() }

func claimParams(key, owner, fingerprint string) store.ClaimParams {
	return store.ClaimParams{Key: key, Owner: owner, Fingerprint: fingerprint, LeaseTTL: time.Minute, Retention: time.Hour}
}

func TestFingerprintsComparedByteForByte(t *testing.T) {
	s := newStore(t, newDB(t), nil)
	for _, tc := range []struct{ name, held, other string }{
		{"AfterNUL", "a\x00b", "a\x00c"},
		{"NULVersusEmpty", "", "\x00"},
		{"InvalidUTF8", "\xff", "\xfe"},
		{"Case", "A", "a"},
		{"UnicodeNormalisation", "\u00e9", "e\u0301"},
		{"TrailingSpace", "fp", "fp "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := newKey()
			cr, err := s.Claim(t.Context(), claimParams(k, "a", tc.held))
			if err != nil || cr.Status != store.ClaimAcquired {
				t.Fatalf("Claim(%q) = %v, %v; want acquired", tc.held, cr.Status, err)
			}
			for fp, want := range map[string]store.ClaimStatus{tc.held: store.ClaimInFlight, tc.other: store.ClaimMismatch} {
				if got, err := s.Claim(t.Context(), claimParams(k, "b", fp)); err != nil || got.Status != want {
					t.Errorf("Claim(%q) while %q holds = %v, %v; want %v", fp, tc.held, got.Status, err, want)
				}
			}
		})
	}
}

func TestNotMigratedFails(t *testing.T) {
	s, err := sqlitestore.New(newDB(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.Claim(t.Context(), claimParams(newKey(), "a", ""))
	if err == nil || !strings.Contains(err.Error(), "Migrate") {
		t.Fatalf("Claim before Migrate = %v, want an error that says to call Migrate", err)
	}
}

// TestMigrateConcurrently migrates one new file from two handles at once,
// then again: every migration is applied exactly once.
func TestMigrateConcurrently(t *testing.T) {
	dir := t.TempDir()
	dbs := []*sql.DB{openDB(t, dir, "m.db"), openDB(t, dir, "m.db")}
	var wg sync.WaitGroup
	for _, db := range dbs {
		s, err := sqlitestore.New(db, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		wg.Go(func() {
			for range 2 {
				if err := s.Migrate(t.Context()); err != nil {
					t.Errorf("Migrate: %v", err)
				}
			}
		})
	}
	wg.Wait()
	var applied, distinct int
	if err := dbs[0].QueryRowContext(t.Context(), "SELECT count(*), count(DISTINCT version) FROM idem_migrations").Scan(&applied, &distinct); err != nil {
		t.Fatal(err)
	}
	if applied == 0 || applied != distinct {
		t.Fatalf("idem_migrations has %d rows for %d versions, want each version once", applied, distinct)
	}
}

func TestOpenRefusesNonFiles(t *testing.T) {
	for _, path := range []string{"", ":memory:", "file::memory:?cache=shared"} {
		if db, err := sqlitestore.OpenDB(t.Context(), path); err == nil {
			db.Close()
			t.Errorf("OpenDB(%q) = nil error, want a refusal", path)
		}
	}
}

// TestOpenSettings checks the settings Open promises, on several
// connections of the pool at once (pragmas are per connection).
func TestOpenSettings(t *testing.T) {
	db := newDB(t)
	var conns []*sql.Conn
	for range 3 {
		c, err := db.Conn(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	for i, c := range conns {
		for pragma, want := range map[string]string{
			"journal_mode":       "wal",
			"synchronous":        "2", // FULL
			"busy_timeout":       "5000",
			"foreign_keys":       "1",
			"journal_size_limit": "67108864",
		} {
			var got string
			if err := c.QueryRowContext(t.Context(), "PRAGMA "+pragma).Scan(&got); err != nil {
				t.Fatalf("conn %d: PRAGMA %s: %v", i, pragma, err)
			}
			if got != want {
				t.Errorf("conn %d: PRAGMA %s = %s, want %s", i, pragma, got, want)
			}
		}
	}
	if got := db.Stats().MaxOpenConnections; got < 4 {
		t.Errorf("MaxOpenConnections = %d, want at least 4", got)
	}
}

// TestOpenEscapesPaths: a path is a file name, whatever URI characters it
// holds.
func TestOpenEscapesPaths(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"with space.db", "query?mode=ro.db", "hash#frag.db", "percent%41.db"} {
		db := openDB(t, dir, name)
		s := newStore(t, db, nil)
		if _, err := s.Claim(t.Context(), claimParams(newKey(), "a", "")); err != nil {
			t.Errorf("%s: Claim: %v", name, err)
		}
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s: the database is not at its path: %v", name, err)
		}
	}
}

// TestRefusesRollbackJournal: a db the caller opened without WAL is
// refused before any schema is written.
func TestRefusesRollbackJournal(t *testing.T) {
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "delete.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s, err := sqlitestore.New(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Migrate(t.Context()); err == nil || !strings.Contains(err.Error(), "wal") {
		t.Fatalf("Migrate on a rollback-journal database = %v, want a refusal naming WAL", err)
	}
	var tables int
	db.QueryRowContext(t.Context(), "SELECT count(*) FROM sqlite_schema").Scan(&tables)
	if tables != 0 {
		t.Fatalf("the refused database has %d schema objects, want 0", tables)
	}
}

func TestNewRefusesNil(t *testing.T) {
	if _, err := sqlitestore.New(nil, nil); err == nil {
		t.Fatal("New(nil) = nil error")
	}
	if _, err := sqlitestore.New(newDB(t), &sqlitestore.Config{BusyTimeout: -1}); err == nil {
		t.Fatal("New with a negative BusyTimeout = nil error")
	}
}

// lockFile holds the file's write lock from another handle until the
// returned function is called, as another process's transaction would.
func lockFile(t *testing.T, db *sql.DB) (unlock func()) {
	t.Helper()
	conn, err := db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(t.Context(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	unlock = func() {
		once.Do(func() {
			if _, err := conn.ExecContext(context.Background(), "ROLLBACK"); err != nil {
				t.Errorf("rollback: %v", err)
			}
			conn.Close()
		})
	}
	t.Cleanup(unlock)
	return unlock
}

// TestBusyWaitsForAnotherProcess: a claim waits while another handle holds
// the write lock, and succeeds once it is released.
func TestBusyWaitsForAnotherProcess(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, openDB(t, dir, "busy.db"), nil)
	unlock := lockFile(t, openDB(t, dir, "busy.db"))
	time.AfterFunc(200*time.Millisecond, unlock)
	start := time.Now()
	cr, err := s.Claim(t.Context(), claimParams(newKey(), "a", ""))
	if err != nil || cr.Status != store.ClaimAcquired {
		t.Fatalf("Claim while another handle held the lock = %v, %v; want acquired once it was released", cr.Status, err)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("Claim returned after %s, before the other handle released the lock", d)
	}
}

// TestBusyPastTimeoutFailsClosed: a lock held past BusyTimeout makes the
// claim fail, so fn does not run, with an error that says busy.
func TestBusyPastTimeoutFailsClosed(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, openDB(t, dir, "busy.db"), &sqlitestore.Config{BusyTimeout: 200 * time.Millisecond})
	lockFile(t, openDB(t, dir, "busy.db"))
	e, err := idem.New(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = e.Run(t.Context(), "k", func(context.Context) ([]byte, error) {
		t.Error("fn ran without a claim")
		return nil, nil
	}, nil)
	se, ok := errors.AsType[*idem.StoreError](err)
	if !ok || se.Executed || !strings.Contains(err.Error(), "busy") {
		t.Fatalf("Run on a locked database = %v, want a *StoreError, fn not executed, saying busy", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Run gave up after %s, want about BusyTimeout (200ms)", d)
	}
	if !s.Conflict(err) {
		t.Errorf("Conflict(%v) = false, want true", err)
	}
}

func TestConflict(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, openDB(t, dir, "c.db"), nil)
	lockFile(t, openDB(t, dir, "c.db"))
	// A handle without a busy timeout gets SQLITE_BUSY at once.
	impatient, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "c.db")+"?_pragma=busy_timeout(0)")
	if err != nil {
		t.Fatal(err)
	}
	defer impatient.Close()
	_, busyErr := impatient.ExecContext(t.Context(), "INSERT INTO idem_migrations VALUES (99, 'x', 0)")
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"SQLiteBusy", busyErr, true},
		{"Wrapped", errors.Join(errors.New("fn"), busyErr), true},
		{"Other", errors.New("declined"), false},
		{"Nil", nil, false},
		{"Canceled", context.Canceled, false},
	} {
		if got := s.Conflict(tc.err); got != tc.want {
			t.Errorf("%s: Conflict(%v) = %t, want %t", tc.name, tc.err, got, tc.want)
		}
	}
}

// TestBeginClaimWaitsForTheTransaction: a concurrent claim of a key held
// in an uncommitted transaction waits for it and then sees its outcome; a
// claim that cannot wait long enough reports the key in flight.
func TestBeginClaimWaitsForTheTransaction(t *testing.T) {
	s := newStore(t, newDB(t), nil)
	k := newKey()
	tx, cr, err := s.BeginClaim(t.Context(), claimParams(k, "a", "fp"), 0)
	if err != nil || cr.Status != store.ClaimAcquired {
		t.Fatalf("BeginClaim = %v, %v; want acquired", cr.Status, err)
	}

	start := time.Now()
	if tx2, cr, err := s.BeginClaim(t.Context(), claimParams(k, "b", "fp"), 0); err != nil || cr.Status != store.ClaimInFlight || tx2 != nil {
		t.Fatalf("BeginClaim with no wait while the key is held = (%v, %v, %v), want in flight and no transaction", tx2, cr.Status, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("BeginClaim with no wait took %s", d)
	}

	type result struct {
		tx  *sql.Tx
		cr  store.ClaimResult
		err error
	}
	waited := make(chan result, 1)
	go func() {
		tx, cr, err := s.BeginClaim(t.Context(), claimParams(k, "c", "fp"), 10*time.Second)
		waited <- result{tx, cr, err}
	}()
	time.Sleep(100 * time.Millisecond)
	if err := s.Commit(t.Context(), tx, cr.Lease, []byte("done"), false); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	r := <-waited
	if r.err != nil || r.cr.Status != store.ClaimCompleted || string(r.cr.Outcome) != "done" || r.tx != nil {
		t.Fatalf("waiting BeginClaim = (%v, %v %q, %v), want completed with the outcome and no transaction", r.tx, r.cr.Status, r.cr.Outcome, r.err)
	}
	// Committed: the write lock is free again.
	if cr, err := s.Claim(t.Context(), claimParams(newKey(), "d", "")); err != nil || cr.Status != store.ClaimAcquired {
		t.Fatalf("Claim after Commit = %v, %v", cr.Status, err)
	}
}

// TestRollbackLeavesNothing: a rolled-back claim leaves no record and
// frees the write lock; Rollback twice is harmless.
func TestRollbackLeavesNothing(t *testing.T) {
	db := newDB(t)
	s := newStore(t, db, nil)
	createBusiness(t, db)
	k := newKey()
	tx, cr, err := s.BeginClaim(t.Context(), claimParams(k, "a", ""), time.Second)
	if err != nil || cr.Status != store.ClaimAcquired {
		t.Fatalf("BeginClaim = %v, %v", cr.Status, err)
	}
	if _, err := tx.ExecContext(t.Context(), "INSERT INTO business VALUES (?, 1)", k); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := s.Rollback(t.Context(), tx); err != nil {
			t.Fatalf("Rollback: %v", err)
		}
	}
	var records int
	db.QueryRowContext(t.Context(), "SELECT count(*) FROM idem_records WHERE key = ?", k).Scan(&records)
	if n, _ := countRows(t.Context(), db, k); n != 0 || records != 0 {
		t.Fatalf("after Rollback: %d rows and %d records, want none", n, records)
	}
	cr, err = s.Claim(t.Context(), claimParams(k, "b", "other"))
	if err != nil || cr.Status != store.ClaimAcquired || cr.Lease.Fence != 1 {
		t.Fatalf("Claim after Rollback = %v (fence %d), %v; want acquired with fence 1", cr.Status, cr.Lease.Fence, err)
	}
}

// TestCallerGivingUpKeepsTheTransaction: the caller's context ending while
// fn runs does not roll the transaction back behind the engine's back; a
// value fn still returns is recorded with its writes.
func TestCallerGivingUpKeepsTheTransaction(t *testing.T) {
	db := newDB(t)
	s := newStore(t, db, nil)
	createBusiness(t, db)
	e, err := idem.New(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	res, err := idem.RunTx(ctx, e, "k", func(fctx context.Context, tx *sql.Tx) ([]byte, error) {
		if err := insertRow(fctx, tx, "k"); err != nil {
			return nil, err
		}
		cancel()
		time.Sleep(20 * time.Millisecond) // database/sql would roll back here if it watched ctx
		return []byte("v"), nil
	}, nil)
	if err != nil || string(res.Value) != "v" {
		t.Fatalf("RunTx = (%q, %v), want v", res.Value, err)
	}
	if n, err := countRows(t.Context(), db, "k"); err != nil || n != 1 {
		t.Fatalf("business rows = %d (%v), want 1", n, err)
	}
}

func TestClose(t *testing.T) {
	db := newDB(t)
	s, err := sqlitestore.New(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	k := newKey()
	cr, err := s.Claim(t.Context(), claimParams(k, "a", ""))
	if err != nil {
		t.Fatal(err)
	}
	woken := make(chan error, 1)
	go func() { woken <- s.Wait(t.Context(), k, cr.Lease.Fence) }()
	time.Sleep(50 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-woken:
		if !errors.Is(err, sqlitestore.ErrClosed) {
			t.Fatalf("Wait across Close = %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake the waiter")
	}
	if _, err := s.Claim(t.Context(), claimParams(newKey(), "b", "")); !errors.Is(err, sqlitestore.ErrClosed) {
		t.Fatalf("Claim after Close = %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := db.PingContext(t.Context()); err != nil {
		t.Fatalf("the db after Close: %v, want it open", err)
	}
}

// TestTransactionTakesOverExpiredLease: a transactional claim takes over a
// plain holder whose lease expired; the old holder is refused, and its
// waiters are woken when the transaction commits.
func TestTransactionTakesOverExpiredLease(t *testing.T) {
	s := newStore(t, newDB(t), &conformanceConfig)
	k := newKey()
	p := claimParams(k, "old", "fp")
	p.LeaseTTL = 50 * time.Millisecond
	old, err := s.Claim(t.Context(), p)
	if err != nil || old.Status != store.ClaimAcquired {
		t.Fatalf("Claim = %v, %v", old.Status, err)
	}
	woken := make(chan error, 1)
	go func() { woken <- s.Wait(t.Context(), k, old.Lease.Fence) }()
	time.Sleep(100 * time.Millisecond) // past the lease
	tx, cr, err := s.BeginClaim(t.Context(), claimParams(k, "new", "fp"), time.Second)
	if err != nil || cr.Status != store.ClaimAcquired || !cr.TookOver || cr.Lease.Fence != old.Lease.Fence+1 {
		t.Fatalf("BeginClaim after the lease expired = %+v, %v; want acquired, took over, fence %d", cr, err, old.Lease.Fence+1)
	}
	select {
	case err := <-woken:
		t.Fatalf("waiter woken (%v) before the takeover committed", err)
	default:
	}
	if err := s.Commit(t.Context(), tx, cr.Lease, []byte("new"), false); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-woken:
		if err != nil {
			t.Fatalf("Wait = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the commit did not wake the old fence's waiter")
	}
	if err := s.Complete(t.Context(), old.Lease, []byte("old")); !errors.Is(err, idem.ErrLeaseLost) {
		t.Fatalf("the old holder's Complete = %v, want ErrLeaseLost", err)
	}
	if got, err := s.Claim(t.Context(), claimParams(k, "c", "fp")); err != nil || string(got.Outcome) != "new" {
		t.Fatalf("Claim = %v %q, %v; want the transaction's outcome", got.Status, got.Outcome, err)
	}
}

// TestDeferredTransactions: on databases the caller opened without
// _txlock=immediate, BeginClaim's first statement takes the write lock, so
// a transactional storm over two handles still writes each row once.
func TestDeferredTransactions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "deferred.db")
	var engines []*idem.Engine
	var dbs []*sql.DB
	for range 2 {
		db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		dbs = append(dbs, db)
		e, err := idem.New(newStore(t, db, nil), nil)
		if err != nil {
			t.Fatal(err)
		}
		engines = append(engines, e)
	}
	createBusiness(t, dbs[0])
	const goroutines, keys = 16, 20
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range keys {
				key := "order-" + string(rune('a'+(i+g)%keys))
				_, err := idem.RunTx(t.Context(), engines[g%2], key, func(ctx context.Context, tx *sql.Tx) ([]byte, error) {
					return nil, insertRow(ctx, tx, key)
				}, nil)
				if err != nil {
					t.Errorf("RunTx(%s): %v", key, err)
				}
			}
		})
	}
	wg.Wait()
	for i := range keys {
		key := "order-" + string(rune('a'+i))
		if n, err := countRows(t.Context(), dbs[1], key); err != nil || n != 1 {
			t.Errorf("%s: %d business rows (%v), want 1", key, n, err)
		}
	}
}

// TestWriteQueuesWithTheStore: while a Write holds the lock, the Store's
// own writes wait for it (a claim does not land), and go ahead once it
// returns; a Write waits for a transaction of the Store the same way.
func TestWriteQueuesWithTheStore(t *testing.T) {
	db := newDB(t)
	s := newStore(t, db, nil)
	createBusiness(t, db)
	ctx := t.Context()

	claimed := make(chan error, 1)
	err := s.Write(ctx, func(wctx context.Context) error {
		go func() {
			_, err := s.Claim(ctx, claimParams(newKey(), "a", ""))
			claimed <- err
		}()
		// Time for the claim to land if it were not queued behind this
		// write; it cannot land while the lock is held.
		select {
		case err := <-claimed:
			claimed <- err
			t.Errorf("a claim landed while a Write held the lock (err %v)", err)
		case <-time.After(200 * time.Millisecond):
		}
		_, err := db.ExecContext(wctx, "INSERT INTO business (id, fence) VALUES ('w', 0)")
		return err
	})
	if err != nil {
		t.Fatalf("Write = %v", err)
	}
	if err := <-claimed; err != nil {
		t.Fatalf("Claim after the Write = %v", err)
	}

	tx, cr, err := s.BeginClaim(ctx, claimParams(newKey(), "b", ""), time.Second)
	if err != nil || cr.Status != store.ClaimAcquired {
		t.Fatalf("BeginClaim = %v, %v", cr.Status, err)
	}
	entered, wrote := make(chan struct{}), make(chan error, 1)
	go func() {
		wrote <- s.Write(ctx, func(ctx context.Context) error {
			close(entered)
			_, err := db.ExecContext(ctx, "INSERT INTO business (id, fence) VALUES ('after', 0)")
			return err
		})
	}()
	// Without the queue f would start at once, and its INSERT wait in
	// SQLite's busy handler instead.
	select {
	case <-entered:
		s.Rollback(ctx, tx)
		t.Fatal("a Write's f started while a BeginClaim transaction held the lock")
	case <-time.After(200 * time.Millisecond):
	}
	if err := s.Commit(ctx, tx, cr.Lease, []byte("done"), false); err != nil {
		t.Fatal(err)
	}
	if err := <-wrote; err != nil {
		t.Fatalf("Write after the Commit = %v", err)
	}
}

// TestWriteFailsBusy: a Write that cannot have the lock within BusyTimeout
// does not run f, and says the database is busy; f's own error comes back
// as it is; after Close, Write returns ErrClosed.
func TestWriteFailsBusy(t *testing.T) {
	s := newStore(t, newDB(t), &sqlitestore.Config{BusyTimeout: 100 * time.Millisecond})
	ctx := t.Context()
	tx, cr, err := s.BeginClaim(ctx, claimParams(newKey(), "a", ""), time.Second)
	if err != nil || cr.Status != store.ClaimAcquired {
		t.Fatalf("BeginClaim = %v, %v", cr.Status, err)
	}
	defer s.Rollback(ctx, tx)
	err = s.Write(ctx, func(context.Context) error {
		t.Error("f ran without the lock")
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "busy") {
		t.Fatalf("Write while the lock is held past BusyTimeout = %v, want an error saying busy", err)
	}
	s.Rollback(ctx, tx)
	declined := errors.New("declined")
	if err := s.Write(ctx, func(context.Context) error { return declined }); err != declined {
		t.Fatalf("Write = %v, want f's error as it is", err)
	}
	s.Close()
	if err := s.Write(ctx, func(context.Context) error { return nil }); !errors.Is(err, sqlitestore.ErrClosed) {
		t.Fatalf("Write after Close = %v, want ErrClosed", err)
	}
}

// TestTransient: SQLite failing under fn (here a database full at its
// max_page_count) is not fn's answer: RunTx records nothing, and the next
// call of the key runs fn again.
func TestTransient(t *testing.T) {
	s := newStore(t, newDB(t), nil)
	e, err := idem.New(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	ran := 0
	fn := func(ctx context.Context, tx *sql.Tx) ([]byte, error) {
		if ran++; ran > 1 {
			return []byte("ok"), nil
		}
		var pages int
		if err := tx.QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages); err != nil {
			return nil, err
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA max_page_count = %d", pages)); err != nil {
			return nil, err
		}
		_, err := tx.ExecContext(ctx, "CREATE TABLE filler AS SELECT randomblob(1000000) AS b")
		if _, resetErr := tx.ExecContext(ctx, "PRAGMA max_page_count = 4294967294"); resetErr != nil {
			return nil, resetErr
		}
		return nil, err
	}
	if _, err := idem.RunTx(t.Context(), e, "k", fn, nil); err == nil || !s.Transient(err) {
		t.Fatalf("RunTx = %v, want SQLITE_FULL, Transient", err)
	}
	res, err := idem.RunTx(t.Context(), e, "k", fn, nil)
	if err != nil || res.Replayed || string(res.Value) != "ok" || ran != 2 {
		t.Fatalf("the call after = (%q, replayed %t, %v), fn ran %d times; want fn run again", res.Value, res.Replayed, err, ran)
	}
	for _, err := range []error{errors.New("declined"), context.Canceled, nil} {
		if s.Transient(err) {
			t.Errorf("Transient(%v) = true", err)
		}
	}
}
