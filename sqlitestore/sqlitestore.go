package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"modernc.org/sqlite"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/store"
)

// Defaults for Config.
const (
	DefaultPollInterval = time.Second
	DefaultBusyTimeout  = 5 * time.Second
	DefaultReapInterval = 5 * time.Minute
	DefaultReapBatch    = 1000
)

// ErrClosed is returned by every method of a Store after Close.
var ErrClosed = errors.New("sqlitestore: store closed")

// Config tunes a Store. A nil *Config, and every zero field, means the
// documented default.
type Config struct {
	// PollInterval is how often a waiter re-reads the record it waits on.
	// Changes made through this Store wake its waiters at once; the poll is
	// how a waiter sees a change made by another process, or another Store,
	// sharing the file. Default 1s.
	PollInterval time.Duration

	// BusyTimeout bounds how long an operation waits for the database's
	// write lock, which every write to any key takes, while it is held by a
	// transaction of this process (BeginClaim until Commit or Rollback) or of
	// another process; busy and locked errors are retried with backoff
	// within it. An operation that cannot write in time fails, and a claim
	// that fails this way has not run fn. BeginClaim waits by its own
	// maxWait instead. Default 5s.
	BusyTimeout time.Duration

	// ReapInterval is how often expired records are deleted. Each round
	// sweeps the whole table in key order, reading every record once, so
	// the interval trades disk space held by expired records against that
	// read. Negative turns the reaper off, for instance in all but one of
	// several processes sharing a file (several reapers are harmless, only
	// redundant). Expired records are treated as absent whether or not they
	// have been reaped. Default 5m.
	ReapInterval time.Duration

	// ReapBatch is how many records one step of the sweep examines, and so
	// the most one DELETE removes. The reaper takes and releases the write
	// lock for each step, so claims interleave with a long sweep.
	// Default 1000.
	ReapBatch int

	// Logger receives reaper failures. Default: discard.
	Logger *slog.Logger
}

func (c *Config) resolve() (Config, error) {
	var r Config
	if c != nil {
		r = *c
	}
	if r.PollInterval == 0 {
		r.PollInterval = DefaultPollInterval
	}
	if r.BusyTimeout == 0 {
		r.BusyTimeout = DefaultBusyTimeout
	}
	if r.ReapInterval == 0 {
		r.ReapInterval = DefaultReapInterval
	}
	if r.ReapBatch == 0 {
		r.ReapBatch = DefaultReapBatch
	}
	if r.PollInterval < 0 || r.BusyTimeout < 0 || r.ReapBatch < 0 {
		return r, errors.New("sqlitestore: PollInterval, BusyTimeout and ReapBatch must not be negative")
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
	return r, nil
}

// Store is a store.Store and a store.TxStore[*sql.Tx] on one SQLite
// database. It is safe for concurrent use. Use one Store per database file
// in a process: the Store serialises this process's writes itself, which
// two Stores on one file cannot do for each other (they still work, through
// SQLite's busy handler, only slower).
type Store struct {
	db  *sql.DB
	cfg Config

	// writer is this process's write lock: one write statement or one
	// BeginClaim transaction at a time. SQLite allows one writer per file;
	// queueing here, on a channel, wakes the next writer as soon as the lock
	// is free, where SQLite's busy handler would poll with sleeps.
	writer chan struct{}
	// active is the BeginClaim transaction holding writer, if any.
	active atomic.Pointer[activeTx]

	stmts  atomic.Pointer[statements] // nil until ready, and after Close
	prepMu sync.Mutex

	waiters waiters
	closed  atomic.Bool
	stop    context.CancelFunc
	reaped  chan struct{} // closed when the reaper has stopped
}

var (
	_ store.Store            = (*Store)(nil)
	_ store.TxStore[*sql.Tx] = (*Store)(nil)
)

// New returns a Store on db and starts its reaper. Call Migrate before the
// first operation; New itself sends nothing to the database.
//
// db must be a database of the modernc.org/sqlite driver ("sqlite") on a
// file, in WAL mode; OpenDB returns one. A db opened by the caller should also
// have a busy timeout (PRAGMA busy_timeout, for the lock waits of other
// processes) and, for its own transactions, _txlock=immediate; the Store
// works without either, but its first operation refuses a database not in
// WAL mode. The db stays the caller's: Close does not close it.
func New(db *sql.DB, cfg *Config) (*Store, error) {
	if db == nil {
		return nil, errors.New("sqlitestore: New needs a *sql.DB (sqlitestore.OpenDB opens one)")
	}
	if _, ok := db.Driver().(*sqlite.Driver); !ok {
		return nil, fmt.Errorf("sqlitestore: New needs a database of the modernc.org/sqlite driver, got driver %T", db.Driver())
	}
	c, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(context.Background())
	s := &Store{
		db:      db,
		cfg:     c,
		writer:  make(chan struct{}, 1),
		waiters: waiters{byKey: make(map[string]*waitSlot)},
		stop:    stop,
		reaped:  make(chan struct{}),
	}
	if c.ReapInterval > 0 {
		go s.reapEvery(ctx, c.ReapInterval)
	} else {
		close(s.reaped)
	}
	return s, nil
}

// Close stops the reaper, wakes every waiter (their Wait returns ErrClosed)
// and releases the Store's prepared statements. Call it once the Store's
// last call has returned. It does not close the db.
func (s *Store) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	s.stop()
	<-s.reaped
	s.waiters.closeAll()
	s.prepMu.Lock()
	st := s.stmts.Swap(nil)
	s.prepMu.Unlock()
	if st != nil {
		return st.close()
	}
	return nil
}

// OpenDB opens the SQLite database file at path (created if missing) with
// the settings the Store expects, which also suit the caller's own tables:
//
//   - WAL journal mode, so readers never block the writer or each other;
//   - busy_timeout 5s, so a write waits for another process's lock instead
//     of failing at once;
//   - synchronous=FULL: every commit is fsynced before it returns, so an
//     acknowledged record survives power loss, not only a process crash
//     (NORMAL, which syncs only at checkpoints, is faster and loses the last
//     commits on power loss; open the db yourself to choose it);
//   - journal_size_limit 64 MiB: the WAL file is truncated to that size
//     once a checkpoint has emptied it, so a burst of writes does not leave
//     a large file behind;
//   - foreign_keys on, for the caller's schema;
//   - _txlock=immediate: every transaction takes the write lock when it
//     begins, so a transaction that reads and then writes cannot fail with
//     SQLITE_BUSY_SNAPSHOT half-way;
//   - a pool of max(4, GOMAXPROCS+1) connections: one writer at a time (the
//     Store queues writers in process) and the rest for concurrent readers.
//
// OpenDB checks that the file is reachable and in WAL mode before it
// returns. Close the db when done, after the Store.
func OpenDB(ctx context.Context, path string) (*sql.DB, error) {
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("sqlitestore: Open needs a file path, got %q (for a store in memory use memstore)", path)
	}
	q := url.Values{}
	for _, p := range []string{"busy_timeout(5000)", "journal_mode(WAL)", "synchronous(FULL)", "journal_size_limit(67108864)", "foreign_keys(1)"} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: open %s: %w", path, err)
	}
	n := max(4, runtime.GOMAXPROCS(0)+1)
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	db.SetConnMaxIdleTime(0)
	db.SetConnMaxLifetime(0)
	if err := checkWAL(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlitestore: open %s: %w", path, err)
	}
	return db, nil
}

// checkWAL refuses a database that is not in WAL mode: an in-memory
// database (one per connection) or a file on which WAL could not be set.
func checkWAL(ctx context.Context, db *sql.DB) error {
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return failed("check journal mode", err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("sqlitestore: the database is in journal mode %q, want wal (PRAGMA journal_mode=WAL on a file; sqlitestore.OpenDB sets it)", mode)
	}
	return nil
}

// now is the store's clock: the host's wall clock in Unix milliseconds.
// Every process sharing the file reads the same clock, and each statement
// is judged by one reading of it.
func now() int64 { return time.Now().UnixMilli() }

// Record states, as stored.
const (
	stateFree       = 0
	stateInProgress = 1
	stateCompleted  = 2
)

// record is a row as Claim reads it.
type record struct {
	state      int64
	fence      int64
	same       int64 // 1 when the fingerprint equals the claimant's
	leaseUntil int64
	expiresAt  int64
	outcome    []byte // only when completed with the same fingerprint
}

// decide judges r, read at now, for a claim: the result to return, or
// claimable when the claim may take the record (absent, free, expired, or
// in progress with an expired lease and the same fingerprint, which is a
// takeover).
func decide(p store.ClaimParams, r record, found bool, now int64) (cr store.ClaimResult, claimable, takeover bool) {
	if !found {
		return cr, true, false
	}
	if now >= r.expiresAt && !(r.state == stateInProgress && now < r.leaseUntil) {
		return cr, true, false // past retention: absent
	}
	switch r.state {
	case stateCompleted:
		if r.same != 1 {
			return store.ClaimResult{Status: store.ClaimMismatch}, false, false
		}
		out := r.outcome
		if out == nil {
			out = []byte{}
		}
		return store.ClaimResult{Status: store.ClaimCompleted, Outcome: out}, false, false
	case stateInProgress:
		if r.same != 1 {
			return store.ClaimResult{Status: store.ClaimMismatch}, false, false
		}
		if now < r.leaseUntil {
			return store.ClaimResult{
				Status:     store.ClaimInFlight,
				Lease:      store.Lease{Key: p.Key, Fence: r.fence},
				RetryAfter: time.Duration(r.leaseUntil-now) * time.Millisecond,
			}, false, false
		}
		return cr, true, true
	}
	return cr, true, false
}

// inspect judges key's record for p's claim, as decide does. The record
// is peeked at first: a replay, or an absent key, needs nothing more.
func inspect(ctx context.Context, st *statements, p store.ClaimParams) (cr store.ClaimResult, claimable, takeover bool, r record, found bool, err error) {
	var v any
	err = st.peek.QueryRowContext(ctx, p.Key, p.Fingerprint, now()).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return cr, true, false, r, false, nil
	}
	if err != nil {
		return cr, false, false, r, false, failed("claim", err)
	}
	if out, ok := v.([]byte); ok {
		if out == nil {
			out = []byte{}
		}
		return store.ClaimResult{Status: store.ClaimCompleted, Outcome: out}, false, false, r, true, nil
	}
	if r, found, err = read(ctx, st.read, p); err != nil {
		return cr, false, false, r, false, err
	}
	cr, claimable, takeover = decide(p, r, found, now())
	return cr, claimable, takeover, r, found, nil
}

// read reads key's record through stmt (st.read, or its transaction copy).
func read(ctx context.Context, stmt *sql.Stmt, p store.ClaimParams) (r record, found bool, err error) {
	err = stmt.QueryRowContext(ctx, p.Key, p.Fingerprint).Scan(&r.state, &r.fence, &r.same, &r.leaseUntil, &r.expiresAt, &r.outcome)
	if errors.Is(err, sql.ErrNoRows) {
		return r, false, nil
	}
	if err != nil {
		return r, false, failed("claim", err)
	}
	return r, true, nil
}

// take writes p's claim over r, read at now, as one compare-and-set: it
// inserts a new record if r was absent, and otherwise updates r only if its
// fence, state and lease are still as read. ok is false when the record
// changed since it was read. bind maps a statement into the caller's
// transaction, if any.
func take(ctx context.Context, st *statements, bind func(*sql.Stmt) *sql.Stmt, p store.ClaimParams, r record, found bool, now int64) (ok bool, err error) {
	lease, retention := p.LeaseTTL.Milliseconds(), p.Retention.Milliseconds()
	var res sql.Result
	if !found {
		res, err = bind(st.insert).ExecContext(ctx, p.Key, p.Owner, p.Fingerprint, lease, retention, now)
	} else {
		res, err = bind(st.take).ExecContext(ctx, p.Key, p.Owner, p.Fingerprint, lease, retention, now, r.fence, r.state, r.leaseUntil)
	}
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// acquired is the result of a claim that took r.
func acquired(p store.ClaimParams, r record, found, takeover bool) store.ClaimResult {
	fence := int64(1)
	if found {
		fence = r.fence + 1
	}
	return store.ClaimResult{
		Status:   store.ClaimAcquired,
		Lease:    store.Lease{Key: p.Key, Owner: p.Owner, Fence: fence},
		TookOver: takeover,
	}
}

// Claim implements store.Store. A completed record, a live lease and a
// mismatch are read without the write lock; only a claim that takes the key writes, with
// a compare-and-set against what it read, and reads again if the record
// changed in between.
func (s *Store) Claim(ctx context.Context, p store.ClaimParams) (store.ClaimResult, error) {
	st, err := s.ready(ctx)
	if err != nil {
		return store.ClaimResult{}, err
	}
	for {
		cr, claimable, takeover, r, found, err := inspect(ctx, st, p)
		if err != nil || !claimable {
			return cr, err
		}
		var ok bool
		err = s.write(ctx, func(ctx context.Context) (err error) {
			// The clock is read again under the lock: the record can only
			// have aged since it was judged claimable, and the new lease
			// starts now, not before a wait for the lock.
			ok, err = take(ctx, st, plain, p, r, found, now())
			return err
		})
		if err != nil {
			return store.ClaimResult{}, failed("claim", err)
		}
		if ok {
			if takeover {
				s.waiters.wake(p.Key)
			}
			return acquired(p, r, found, takeover), nil
		}
	}
}

// plain binds a statement to no transaction.
func plain(stmt *sql.Stmt) *sql.Stmt { return stmt }

// Renew implements store.Store.
func (s *Store) Renew(ctx context.Context, l store.Lease) error {
	return s.fenced(ctx, "renew", func(st *statements) *sql.Stmt { return st.renew }, l)
}

// Complete implements store.Store.
func (s *Store) Complete(ctx context.Context, l store.Lease, outcome []byte) error {
	if err := s.fenced(ctx, "complete", func(st *statements) *sql.Stmt { return st.complete }, l, outcome); err != nil {
		return err
	}
	s.waiters.wake(l.Key)
	return nil
}

// Release implements store.Store.
func (s *Store) Release(ctx context.Context, l store.Lease) error {
	if err := s.fenced(ctx, "release", func(st *statements) *sql.Stmt { return st.release }, l); err != nil {
		return err
	}
	s.waiters.wake(l.Key)
	return nil
}

// fenced runs a compare-and-set statement on l's record, whose parameters
// are key, owner, fence, the store's clock, then extra. It returns
// idem.ErrLeaseLost when l's fence is no longer current.
func (s *Store) fenced(ctx context.Context, op string, pick func(*statements) *sql.Stmt, l store.Lease, extra ...any) error {
	st, err := s.ready(ctx)
	if err != nil {
		return err
	}
	stmt := pick(st)
	var n int64
	err = s.write(ctx, func(ctx context.Context) error {
		args := append([]any{l.Key, l.Owner, l.Fence, now()}, extra...)
		res, err := stmt.ExecContext(ctx, args...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return failed(op, err)
	}
	if n != 1 {
		return idem.ErrLeaseLost
	}
	return nil
}

// Write runs f holding this process's write lock, the queue the Store's
// own writes wait in, and runs it again while the database is busy or
// locked, up to BusyTimeout. Give it the application's own writes to the
// same file: in the queue they take their turn as soon as the writer
// before them is done, where two writers meeting at SQLite's lock leave
// one in SQLite's busy handler, which sleeps in growing steps of up to
// 100 ms (TestWriteQueuesWithTheStore).
//
// f may be one write statement or a whole transaction, and may run more
// than once: a transaction it begins must end before it returns, and any
// effect outside the database must bear a retry. Its ctx ends BusyTimeout
// after the call at the latest, so keep it short: long work such as a
// migration belongs in a transaction of its own. f's error is in the
// chain of Write's (errors.Is finds it); a lock not had within
// BusyTimeout is an error that says the database is busy, and a ctx done
// first is ctx's error.
//
// The lock is not reentrant. f must not call the Store, and Write must not
// be called while this goroutine's BeginClaim transaction (RunTx's fn, a
// handler under idemhttp.MiddlewareTx) holds the lock: it would wait for
// itself until BusyTimeout and fail busy. Write those in that transaction.
func (s *Store) Write(ctx context.Context, f func(ctx context.Context) error) error {
	if s.closed.Load() {
		return ErrClosed
	}
	err := s.write(ctx, f)
	if errors.Is(err, errBusy) {
		return failed("write", err)
	}
	return err
}

// write runs f, one write statement or a transaction of Write's, holding
// this process's write lock, within BusyTimeout: the wait for the lock in
// this process, SQLite's busy handler waiting for another process's lock,
// and retries of busy and locked errors (a database opened without a busy
// timeout, or a lock the busy handler does not wait for), with jittered
// exponential backoff.
func (s *Store) write(ctx context.Context, f func(ctx context.Context) error) error {
	deadline := time.Now().Add(s.cfg.BusyTimeout)
	wctx := ctx
	if d, ok := ctx.Deadline(); !ok || d.After(deadline) {
		var cancel context.CancelFunc
		wctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	for attempt := 0; ; attempt++ {
		err := s.lockUntil(wctx, deadline)
		if err == nil {
			err = f(wctx)
			s.unlock()
			if err == nil {
				return nil
			}
		}
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case wctx.Err() != nil || errors.Is(err, errLockWait):
			return fmt.Errorf("%w: not done within %s: %w", errBusy, s.cfg.BusyTimeout, err)
		case !busy(err):
			return err
		}
		if err := sleepCtx(wctx, backoff(attempt)); err != nil && ctx.Err() == nil {
			return fmt.Errorf("%w: not done within %s", errBusy, s.cfg.BusyTimeout)
		}
	}
}

// lockUntil takes this process's write lock, waiting until deadline at
// most. It returns errLockWait when the deadline passes first.
func (s *Store) lockUntil(ctx context.Context, deadline time.Time) error {
	select {
	case s.writer <- struct{}{}:
		return nil
	default:
	}
	left := time.Until(deadline)
	if left <= 0 {
		return errLockWait
	}
	t := time.NewTimer(left)
	defer t.Stop()
	select {
	case s.writer <- struct{}{}:
		return nil
	case <-ctx.Done():
		if time.Now().Before(deadline) {
			return ctx.Err()
		}
		return errLockWait
	case <-t.C:
		return errLockWait
	}
}

func (s *Store) unlock() { <-s.writer }

// backoff is the pause after the attempt-th busy error: exponential from
// 1ms up to 50ms, with full jitter.
func backoff(attempt int) time.Duration {
	return rand.N(min(time.Millisecond<<min(attempt, 6), 50*time.Millisecond)) + 100*time.Microsecond
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// statements are the Store's prepared statements. Parameters are numbered;
// times are Unix milliseconds.
type statements struct {
	peek, read, held, insert, take, renew, complete, release *sql.Stmt
	savepoint, rollbackTo                                    *sql.Stmt
	reapNext, reap                                           *sql.Stmt
}

func (st *statements) all() []**sql.Stmt {
	return []**sql.Stmt{
		&st.peek, &st.read, &st.held, &st.insert, &st.take, &st.renew, &st.complete, &st.release,
		&st.savepoint, &st.rollbackTo,
		&st.reapNext, &st.reap,
	}
}

// statementSQL is the text of each statement, in the order of all.
var statementSQL = []string{
	// peek (key, fingerprint, now): the replay path, as narrow as a
	// primary-key SELECT of one column. The outcome (a BLOB) if the record
	// is completed with this fingerprint and unexpired; 0 (an INTEGER) for
	// any other record, which read then looks at; no row if absent.
	`SELECT CASE WHEN state = 2 AND fingerprint = ?2 AND expires_at > ?3 THEN coalesce(outcome, x'') ELSE 0 END
	FROM idem_records WHERE key = ?1`,
	// read (key, fingerprint): the record, with the outcome only when it is
	// the one to replay.
	`SELECT state, fence, fingerprint = ?2, lease_until, expires_at,
		CASE WHEN state = 2 AND fingerprint = ?2 THEN outcome END
	FROM idem_records WHERE key = ?1`,
	// held (key, fence): whether the fence is still in progress.
	`SELECT 1 FROM idem_records WHERE key = ?1 AND fence = ?2 AND state = 1`,
	// insert (key, owner, fingerprint, lease, retention, now): claim an
	// absent key.
	`INSERT INTO idem_records (key, state, fence, owner, fingerprint, lease_ms, retention_ms, lease_until, expires_at)
	VALUES (?1, 1, 1, ?2, ?3, ?4, ?5, ?6 + ?4, ?6 + ?4 + ?5)
	ON CONFLICT (key) DO NOTHING`,
	// take (key, owner, fingerprint, lease, retention, now, fence, state,
	// lease_until as read): claim an existing record if it is as read.
	`UPDATE idem_records SET state = 1, fence = fence + 1, owner = ?2, fingerprint = ?3,
		lease_ms = ?4, retention_ms = ?5, lease_until = ?6 + ?4, expires_at = ?6 + ?4 + ?5, outcome = NULL
	WHERE key = ?1 AND fence = ?7 AND state = ?8 AND lease_until = ?9`,
	// renew (key, owner, fence, now)
	`UPDATE idem_records SET lease_until = ?4 + lease_ms, expires_at = ?4 + lease_ms + retention_ms
	WHERE key = ?1 AND owner = ?2 AND fence = ?3 AND state = 1`,
	// complete (key, owner, fence, now, outcome)
	`UPDATE idem_records SET state = 2, outcome = ?5, expires_at = ?4 + retention_ms
	WHERE key = ?1 AND owner = ?2 AND fence = ?3 AND state = 1`,
	// release (key, owner, fence, now): back to free, keeping the fence.
	`UPDATE idem_records SET state = 0, owner = '', fingerprint = '', outcome = NULL, expires_at = ?4 + retention_ms
	WHERE key = ?1 AND owner = ?2 AND fence = ?3 AND state = 1`,
	// savepoint, rollbackTo: fn's writes in a BeginClaim transaction.
	`SAVEPOINT ` + savepoint,
	`ROLLBACK TO ` + savepoint,
	// reapNext (after, batch): the last key of the next batch of keys, NULL
	// past the last.
	`SELECT max(key) FROM (SELECT key FROM idem_records WHERE key > ?1 ORDER BY key LIMIT ?2)`,
	// reap (after, upto, now): delete the expired records of the key range
	// (after, upto]. An in-progress record expires only after its lease
	// (expires_at = lease_until + retention), so no live holder loses its
	// record.
	`DELETE FROM idem_records WHERE key > ?1 AND key <= ?2 AND expires_at <= ?3`,
}

func (st *statements) close() error {
	var errs []error
	for _, p := range st.all() {
		if *p != nil {
			errs = append(errs, (*p).Close())
		}
	}
	return errors.Join(errs...)
}

// ready returns the prepared statements, checking the database and
// preparing them on first use.
func (s *Store) ready(ctx context.Context) (*statements, error) {
	if st := s.stmts.Load(); st != nil {
		return st, nil
	}
	s.prepMu.Lock()
	defer s.prepMu.Unlock()
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if st := s.stmts.Load(); st != nil {
		return st, nil
	}
	if err := checkWAL(ctx, s.db); err != nil {
		return nil, err
	}
	v, err := schemaVersion(ctx, s.db)
	if err != nil {
		return nil, err
	}
	if latest := len(migrations); v != latest {
		return nil, fmt.Errorf("%w: the database is at schema version %d, this package needs %d", errNotMigrated, v, latest)
	}
	st := &statements{}
	for i, p := range st.all() {
		if *p, err = s.db.PrepareContext(ctx, statementSQL[i]); err != nil {
			st.close()
			return nil, failed("prepare", err)
		}
	}
	s.stmts.Store(st)
	return st, nil
}
