// Package pgstore is an idem.Store on PostgreSQL (pgx v5): the system of
// record for services on many nodes, and the store whose transactional mode
// (idem.RunTx with a pgx.Tx) commits a caller's writes and their outcome
// together.
//
// Every store step is one SQL statement: a claim is an INSERT … ON
// CONFLICT … DO UPDATE … WHERE <claimable> in a CTE that also returns the
// existing record, so a replay costs one round trip and a first execution
// two. Leases are judged by the server's clock (statement_timestamp()),
// compare-and-set on (owner, fence) guards every later write, and fences
// only grow while a record exists. Waiters are woken by LISTEN/NOTIFY on one
// connection per Store, with a bounded poll as fallback; a notification is
// sent only when someone waits, because NOTIFY serializes commits.
//
// The schema is applied by Migrate, never behind the caller's back.
// Expired records are deleted by a reaper in small batches. Serialization
// failures and deadlocks of the store's own statements are retried with
// bounded backoff.
//
// Durability is PostgreSQL's: an outcome is durable once its statement (or,
// with RunTx, the caller's transaction) commits. A commit whose
// acknowledgement is lost is reported as not recorded; a retry finds out
// which it was.
package pgstore

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/internal/waitlist"
)

// Defaults for Config.
const (
	DefaultSchema       = "idem"
	DefaultOpTimeout    = 5 * time.Second
	DefaultPollInterval = time.Second
	DefaultReapInterval = time.Minute
	DefaultReapBatch    = 1000
)

// Config tunes a Store. A nil *Config, and every zero field, means the
// documented default.
type Config struct {
	// Schema holds the store's tables; Migrate creates it. Lower-case
	// letters, digits and underscores, starting with a letter or an
	// underscore. Default "idem".
	Schema string

	// OpTimeout bounds each store statement, so an unreachable or stalled
	// server becomes an error instead of a hang. Default 5s.
	OpTimeout time.Duration

	// PollInterval is how often a waiter re-reads the record in case a
	// notification was lost. Default 1s.
	PollInterval time.Duration

	// ReapInterval is how often expired records are deleted, ReapBatch at a
	// time until none are left. Negative disables the reaper (call Reap
	// yourself). Defaults 1m and 1000.
	ReapInterval time.Duration
	ReapBatch    int

	// Logger receives listener and reaper trouble. Default: discard.
	Logger *slog.Logger
}

var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,46}$`)

func (c *Config) resolve() (Config, error) {
	var r Config
	if c != nil {
		r = *c
	}
	if r.Schema == "" {
		r.Schema = DefaultSchema
	}
	if !schemaName.MatchString(r.Schema) {
		return r, fmt.Errorf("pgstore: Schema %q must be lower-case letters, digits and underscores, starting with a letter or underscore, at most 47 characters", r.Schema)
	}
	if r.OpTimeout == 0 {
		r.OpTimeout = DefaultOpTimeout
	}
	if r.PollInterval == 0 {
		r.PollInterval = DefaultPollInterval
	}
	if r.ReapInterval == 0 {
		r.ReapInterval = DefaultReapInterval
	}
	if r.ReapBatch == 0 {
		r.ReapBatch = DefaultReapBatch
	}
	if r.OpTimeout < 0 || r.PollInterval < 0 || r.ReapBatch < 0 {
		return r, errors.New("pgstore: OpTimeout, PollInterval and ReapBatch must not be negative")
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
	return r, nil
}

// Store is an idem.Store and an idem.TxStore[pgx.Tx] on PostgreSQL. It is
// safe for concurrent use. Close it to stop its listener and reaper; the
// pool stays the caller's.
type Store struct {
	pool    *pgxpool.Pool
	cfg     Config
	channel string
	sql     statements

	waiters waitlist.List
	stop    context.CancelFunc
	done    sync.WaitGroup
}

var _ idem.TxStore[pgx.Tx] = (*Store)(nil)

// New returns a Store on pool. It starts listening for notifications, and
// returns once the LISTEN is in place, then reaps expired records in the
// background. Call Migrate before the first claim.
func New(ctx context.Context, pool *pgxpool.Pool, cfg *Config) (*Store, error) {
	c, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	s := &Store{
		pool:    pool,
		cfg:     c,
		channel: "idem_" + c.Schema,
		sql:     newStatements(pgx.Identifier{c.Schema, "idem_records"}.Sanitize()),
	}
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.stop = stop
	ready := make(chan error, 1)
	s.done.Add(1)
	go s.listen(runCtx, ready)
	select {
	case err := <-ready:
		if err != nil {
			stop()
			s.done.Wait()
			return nil, err
		}
	case <-ctx.Done():
		stop()
		s.done.Wait()
		return nil, ctx.Err()
	}
	if c.ReapInterval > 0 {
		s.done.Add(1)
		go s.reapEvery(runCtx)
	}
	return s, nil
}

// Close stops the listener and the reaper and wakes any waiters. It does not
// close the pool.
func (s *Store) Close() {
	s.stop()
	s.done.Wait()
	s.waiters.WakeAll()
}

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate creates the schema and applies the migrations it lacks, under an
// advisory lock, so concurrent callers are safe. It is idempotent.
func (s *Store) Migrate(ctx context.Context) error {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	schema := pgx.Identifier{s.cfg.Schema}.Sanitize()
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('idem migrate ' || $1))`, s.cfg.Schema); err != nil {
			return fmt.Errorf("pgstore: migrate: lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+schema); err != nil {
			return fmt.Errorf("pgstore: migrate: create schema %s: %w", s.cfg.Schema, err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+schema+`.idem_migrations (
			name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return fmt.Errorf("pgstore: migrate: %w", err)
		}
		for _, name := range names {
			base := strings.TrimPrefix(name, "migrations/")
			var applied bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT FROM `+schema+`.idem_migrations WHERE name = $1)`, base).Scan(&applied); err != nil {
				return fmt.Errorf("pgstore: migrate: %w", err)
			}
			if applied {
				continue
			}
			body, err := migrations.ReadFile(name)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, strings.ReplaceAll(string(body), "{{schema}}", schema)); err != nil {
				return fmt.Errorf("pgstore: migrate: apply %s: %w", base, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO `+schema+`.idem_migrations (name) VALUES ($1)`, base); err != nil {
				return fmt.Errorf("pgstore: migrate: record %s: %w", base, err)
			}
		}
		return nil
	})
}

// statements are the store's SQL, with its table filled in.
type statements struct {
	claim, renew, complete, release, wait, reap string
}

func newStatements(table string) statements {
	fill := func(q string) string { return strings.ReplaceAll(q, "{{table}}", table) }
	return statements{
		// $1 key, $2 owner, $3 fingerprint, $4 lease ms, $5 retention ms.
		//
		// cur reads the record. When it is plainly not claimable (completed,
		// or held by a live lease, or bound to another fingerprint, and not
		// past retention), nothing is written: a replay is a read, and takes
		// no row lock. Otherwise the INSERT … ON CONFLICT … DO UPDATE claims
		// it if it is still claimable on the latest row version: free, past
		// retention, or in progress under an expired lease with the same
		// fingerprint. When the claim does not happen, the second branch
		// reports the record as cur saw it; a record that changed after
		// that snapshot is reported in flight (3), so the caller looks again.
		claim: fill(`
WITH cur AS (
	SELECT state, fence, fingerprint, outcome, lease_until, expires_at
	FROM {{table}} WHERE key = $1::text
), claimed AS (
	INSERT INTO {{table}} AS r (key, state, fence, owner, fingerprint, lease_until, lease_ms, retention_ms, took_over, waited, outcome, expires_at)
	SELECT $1::text, 'p', 1, $2::text, $3::text, statement_timestamp() + $4::bigint * interval '1 millisecond', $4::bigint, $5::bigint, false, false, NULL,
	       statement_timestamp() + ($4::bigint + $5::bigint) * interval '1 millisecond'
	WHERE NOT EXISTS (
		SELECT FROM cur
		WHERE cur.expires_at > statement_timestamp()
		  AND (cur.state = 'c'
		       OR (cur.state = 'p' AND (cur.lease_until > statement_timestamp() OR cur.fingerprint IS DISTINCT FROM $3::text))))
	ON CONFLICT (key) DO UPDATE SET
		state = 'p', fence = r.fence + 1, owner = excluded.owner, fingerprint = excluded.fingerprint,
		lease_until = excluded.lease_until, lease_ms = excluded.lease_ms, retention_ms = excluded.retention_ms,
		took_over = r.state = 'p', waited = false, outcome = NULL, expires_at = excluded.expires_at
	WHERE r.state = 'f'
	   OR r.expires_at <= statement_timestamp()
	   OR (r.state = 'p' AND r.lease_until <= statement_timestamp() AND r.fingerprint = excluded.fingerprint)
	RETURNING r.fence, r.took_over
)
SELECT 1, fence, took_over, NULL::bytea, 0::bigint FROM claimed
UNION ALL
SELECT CASE WHEN cur.state = 'f' OR cur.expires_at <= statement_timestamp() THEN 3
            WHEN cur.fingerprint IS DISTINCT FROM $3::text THEN 4
            WHEN cur.state = 'c' THEN 2
            ELSE 3 END,
       cur.fence, false,
       CASE WHEN cur.state = 'c' AND cur.fingerprint = $3::text THEN cur.outcome END,
       GREATEST(0, ceil(extract(epoch FROM cur.lease_until - statement_timestamp()) * 1000))::bigint
FROM cur
WHERE NOT EXISTS (SELECT FROM claimed)`),

		// $1 key, $2 owner, $3 fence.
		renew: fill(`
UPDATE {{table}} SET
	lease_until = statement_timestamp() + lease_ms * interval '1 millisecond',
	expires_at = statement_timestamp() + (lease_ms + retention_ms) * interval '1 millisecond'
WHERE key = $1 AND state = 'p' AND owner = $2 AND fence = $3`),

		// $1 key, $2 owner, $3 fence, $4 outcome, $5 channel. Returns
		// (1, notified) when $2 held the fence, no row otherwise.
		complete: fill(`
WITH done AS (
	UPDATE {{table}} SET
		state = 'c', outcome = $4, owner = NULL, lease_until = NULL,
		expires_at = statement_timestamp() + retention_ms * interval '1 millisecond'
	WHERE key = $1 AND state = 'p' AND owner = $2 AND fence = $3
	RETURNING key, waited
), notified AS (
	SELECT pg_notify($5, key) FROM done WHERE waited
)
SELECT count(*), (SELECT count(*) FROM notified) FROM done`),

		// $1 key, $2 owner, $3 fence, $4 channel.
		release: fill(`
WITH done AS (
	UPDATE {{table}} SET
		state = 'f', owner = NULL, fingerprint = NULL, lease_until = NULL, outcome = NULL,
		expires_at = statement_timestamp() + retention_ms * interval '1 millisecond'
	WHERE key = $1 AND state = 'p' AND owner = $2 AND fence = $3
	RETURNING key, waited
), notified AS (
	SELECT pg_notify($4, key) FROM done WHERE waited
)
SELECT count(*), (SELECT count(*) FROM notified) FROM done`),

		// $1 key, $2 fence: marks the record as waited on while it is still
		// in progress with that fence.
		wait: fill(`UPDATE {{table}} SET waited = true WHERE key = $1 AND state = 'p' AND fence = $2`),

		// $1 batch size.
		reap: fill(`
DELETE FROM {{table}} WHERE key IN (
	SELECT key FROM {{table}}
	WHERE expires_at <= statement_timestamp()
	LIMIT $1
	FOR UPDATE SKIP LOCKED)`),
	}
}

// op bounds one store statement by OpTimeout.
func (s *Store) op(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.OpTimeout)
}

// Claim implements idem.Store.
func (s *Store) Claim(ctx context.Context, p idem.ClaimParams) (idem.ClaimResult, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	var cr idem.ClaimResult
	err := s.retry(ctx, func() (err error) {
		cr, err = s.claimIn(ctx, s.pool, p)
		return err
	})
	if err != nil {
		return idem.ClaimResult{}, s.failed("claim", err)
	}
	return cr, nil
}

// querier runs the claim on the pool or in a transaction.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// claimIn runs the claim statement on q. A record that another transaction
// created after the statement's snapshot is invisible to its second branch:
// that comes back as no row, and is reported in flight with no fence, so
// the engine looks again at once.
func (s *Store) claimIn(ctx context.Context, q querier, p idem.ClaimParams) (idem.ClaimResult, error) {
	var (
		status   int
		fence    int64
		tookOver bool
		outcome  []byte
		leftMs   int64
	)
	err := q.QueryRow(ctx, s.sql.claim, p.Key, p.Owner, p.Fingerprint, p.LeaseTTL.Milliseconds(), p.Retention.Milliseconds()).
		Scan(&status, &fence, &tookOver, &outcome, &leftMs)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return idem.ClaimResult{Status: idem.ClaimInFlight, Lease: idem.Lease{Key: p.Key}}, nil
	case err != nil:
		return idem.ClaimResult{}, err
	}
	switch status {
	case 1:
		return idem.ClaimResult{
			Status:   idem.ClaimAcquired,
			Lease:    idem.Lease{Key: p.Key, Owner: p.Owner, Fence: fence},
			TookOver: tookOver,
		}, nil
	case 2:
		return idem.ClaimResult{Status: idem.ClaimCompleted, Outcome: outcome}, nil
	case 3:
		return idem.ClaimResult{
			Status:     idem.ClaimInFlight,
			Lease:      idem.Lease{Key: p.Key, Fence: fence},
			RetryAfter: time.Duration(leftMs) * time.Millisecond,
		}, nil
	case 4:
		return idem.ClaimResult{Status: idem.ClaimMismatch}, nil
	}
	return idem.ClaimResult{}, fmt.Errorf("unexpected claim status %d", status)
}

// Renew implements idem.Store.
func (s *Store) Renew(ctx context.Context, l idem.Lease) error {
	ctx, cancel := s.op(ctx)
	defer cancel()
	var tag pgconn.CommandTag
	err := s.retry(ctx, func() (err error) {
		tag, err = s.pool.Exec(ctx, s.sql.renew, l.Key, l.Owner, l.Fence)
		return err
	})
	if err != nil {
		return s.failed("renew", err)
	}
	if tag.RowsAffected() != 1 {
		return idem.ErrLeaseLost
	}
	return nil
}

// Complete implements idem.Store.
func (s *Store) Complete(ctx context.Context, l idem.Lease, outcome []byte) error {
	ctx, cancel := s.op(ctx)
	defer cancel()
	return s.end(ctx, "complete", func() (int, error) {
		return endFence(ctx, s.pool, s.sql.complete, l.Key, l.Owner, l.Fence, outcome, s.channel)
	})
}

// Release implements idem.Store.
func (s *Store) Release(ctx context.Context, l idem.Lease) error {
	ctx, cancel := s.op(ctx)
	defer cancel()
	return s.end(ctx, "release", func() (int, error) {
		return endFence(ctx, s.pool, s.sql.release, l.Key, l.Owner, l.Fence, s.channel)
	})
}

// end runs a statement that ends a fence, retrying lost races, and reports
// ErrLeaseLost when the fence was not current.
func (s *Store) end(ctx context.Context, op string, run func() (int, error)) error {
	var updated int
	err := s.retry(ctx, func() (err error) {
		updated, err = run()
		return err
	})
	if err != nil {
		return s.failed(op, err)
	}
	if updated != 1 {
		return idem.ErrLeaseLost
	}
	return nil
}

// endFence runs a complete or release statement on q and returns how many
// records it updated: 1, or 0 when the fence was not current.
func endFence(ctx context.Context, q querier, stmt string, args ...any) (updated int, err error) {
	var notified int
	err = q.QueryRow(ctx, stmt, args...).Scan(&updated, &notified)
	return updated, err
}

// Wait implements idem.Store.
func (s *Store) Wait(ctx context.Context, key string, fence int64) error {
	woken := s.waiters.Add(key)
	defer s.waiters.Remove(key, woken)
	for {
		opCtx, cancel := s.op(ctx)
		tag, err := s.pool.Exec(opCtx, s.sql.wait, key, fence)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			return s.failed("wait", err)
		}
		if tag.RowsAffected() != 1 {
			return nil
		}
		poll := time.NewTimer(s.cfg.PollInterval)
		select {
		case <-woken:
			poll.Stop()
			return nil
		case <-ctx.Done():
			poll.Stop()
			return ctx.Err()
		case <-poll.C:
		}
	}
}

// Reap deletes up to ReapBatch expired records and reports how many it
// deleted. The reaper calls it until a batch comes back short.
func (s *Store) Reap(ctx context.Context) (int64, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	tag, err := s.pool.Exec(ctx, s.sql.reap, s.cfg.ReapBatch)
	if err != nil {
		return 0, s.failed("reap", err)
	}
	return tag.RowsAffected(), nil
}

// Conflict implements idem.TxStore: a serialization failure or a deadlock.
func (s *Store) Conflict(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40001" || pgErr.Code == "40P01")
}

// retry runs f again after a serialization failure or deadlock, with
// exponential backoff and full jitter, up to five attempts.
func (s *Store) retry(ctx context.Context, f func() error) error {
	for attempt := 1; ; attempt++ {
		err := f()
		if err == nil || !s.Conflict(err) || attempt == 5 {
			return err
		}
		t := time.NewTimer(rand.N(time.Millisecond << attempt))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		}
	}
}

// failed translates a driver error, the one place that does.
func (s *Store) failed(op string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" {
		return fmt.Errorf("pgstore: %s: the store's table is missing in schema %q; call Migrate first: %w", op, s.cfg.Schema, err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("pgstore: %s: no reply in time (OpTimeout %s): %w", op, s.cfg.OpTimeout, err)
	}
	return fmt.Errorf("pgstore: %s: %w", op, err)
}
