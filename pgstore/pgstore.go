// Package pgstore is a store.Store on PostgreSQL (pgx v5): the system of
// record for services on many nodes, and the store whose transactional mode
// (idem.RunTx with a pgx.Tx) commits a caller's writes and their outcome
// together.
//
// Every store step is one SQL statement, so a replay costs one round trip
// and a first execution two. Under load, claims and completions that
// arrive while others are in flight share a round trip and a commit: one
// statement for the claims, one for the completions, in one transaction
// (see Config.BatchSlots). A call that meets a record another transaction
// holds takes a second statement of its own.
//
// A claim reads the record by its key and returns it when it is a
// completed outcome to replay; only otherwise does the same statement call
// the store's claim function, which inserts the record or takes it over
// (INSERT … ON CONFLICT … DO UPDATE … WHERE <claimable>). Leases are judged
// by the server's clock (statement_timestamp()), compare-and-set on
// (owner, fence) guards every later write, and fences only grow while a
// record exists. Waiters are woken by LISTEN/NOTIFY on one
// connection per Store, with a bounded poll as fallback; a notification is
// sent only when someone waits, because NOTIFY serializes commits.
//
// The schema is applied by Migrate, never behind the caller's back.
// Expired records are deleted by a reaper that sweeps the table in key
// order, in small batches. Serialization
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
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/internal/batch"
	"github.com/idemhq/idem/internal/waitlist"
	"github.com/idemhq/idem/store"
)

// Defaults for Config.
const (
	DefaultSchema       = "idem"
	DefaultOpTimeout    = 5 * time.Second
	DefaultPollInterval = time.Second
	DefaultReapInterval = 5 * time.Minute
	DefaultReapBatch    = 1000
	DefaultBatchSlots   = 2
	DefaultBatchMax     = 64
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

	// ReapInterval is how often the reaper sweeps the table, in key order
	// and ReapBatch records per statement, deleting expired records. A
	// sweep reads every record once, so the interval trades space held by
	// expired records against that read. Expired records count as absent
	// whether or not they have been reaped. Negative disables the reaper
	// (call Reap yourself; several reapers are harmless, only redundant).
	// Defaults 5m and 1000.
	ReapInterval time.Duration
	ReapBatch    int

	// BatchSlots is how many batches of claims and completions a Store
	// has in flight at once, each one round trip and one commit. Calls
	// that arrive while all slots are busy wait, and go together in the
	// next batch, at most BatchMax of them, which is how a busy Store
	// outruns one commit per call. A call that finds a slot free goes at
	// once, alone. A call that waits for a record another transaction
	// holds gives its slot up and runs again outside the slots, bounded
	// only by the pool (see batch.go). BatchMax 1 sends every call alone,
	// still at most BatchSlots at once. Defaults 2 and 64, which suit a
	// server of a few cores: raise BatchSlots for more. With one slot, a
	// call that waits on a held record stalls every other call for up to
	// 100 ms.
	BatchSlots int
	BatchMax   int

	// Logger receives listener and reaper trouble. Default: discard.
	Logger *slog.Logger
}

var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,46}$`)

// checkSchema refuses a schema name the store does not accept.
func checkSchema(schema string) error {
	if !schemaName.MatchString(schema) {
		return fmt.Errorf("pgstore: Schema %q must be lower-case letters, digits and underscores, starting with a letter or underscore, at most 47 characters", schema)
	}
	return nil
}

func (c *Config) resolve() (Config, error) {
	var r Config
	if c != nil {
		r = *c
	}
	if r.Schema == "" {
		r.Schema = DefaultSchema
	}
	if err := checkSchema(r.Schema); err != nil {
		return r, err
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
	if r.BatchSlots == 0 {
		r.BatchSlots = DefaultBatchSlots
	}
	if r.BatchMax == 0 {
		r.BatchMax = DefaultBatchMax
	}
	if r.OpTimeout < 0 || r.PollInterval < 0 || r.ReapBatch < 0 || r.BatchSlots < 0 || r.BatchMax < 0 {
		return r, errors.New("pgstore: OpTimeout, PollInterval, ReapBatch, BatchSlots and BatchMax must not be negative")
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
	return r, nil
}

// Store is a store.Store and a store.TxStore[pgx.Tx] on PostgreSQL. It is
// safe for concurrent use. Close it to stop its listener and reaper; the
// pool stays the caller's.
type Store struct {
	pool    *pgxpool.Pool
	cfg     Config
	channel string
	sql     statements

	writes *batch.Batcher[write, store.ClaimResult]

	waiters waitlist.List[struct{}]
	stop    context.CancelFunc
	done    sync.WaitGroup
}

var _ store.TxStore[pgx.Tx] = (*Store)(nil)

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
		sql:     newStatements(c.Schema),
	}
	s.newBatcher()
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
// close the pool, and always returns nil: it has the same shape as every
// store's Close.
func (s *Store) Close() error {
	s.stop()
	s.done.Wait()
	s.waiters.WakeAll(struct{}{})
	return nil
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
		if _, err := tx.Exec(ctx, migrationsTable(schema)); err != nil {
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
	claim, claimedBy, renew, complete, completedBy, completeInTx, release, wait, reap, notify string

	// With the batch lock timeout (batch.go): for a call alone in a batch
	// slot, and for many.
	claimTimed, completeTimed, claimMany, completeMany string
}

func newStatements(schema string) statements {
	fill := strings.NewReplacer(
		"{{table}}", pgx.Identifier{schema, "idem_records"}.Sanitize(),
		"{{claim}}", pgx.Identifier{schema, "idem_claim"}.Sanitize(),
		"{{complete}}", pgx.Identifier{schema, "idem_complete"}.Sanitize(),
		"{{complete_held}}", pgx.Identifier{schema, "idem_complete_held"}.Sanitize(),
	).Replace
	// One key's claim, its inputs named by {{key}}, {{owner}},
	// {{fingerprint}}, {{lease_ms}} and {{retention_ms}}; {{claim_key}} is
	// the key as idem_claim gets it, which is where a lone claim sets the
	// batch lock timeout, so that a replay never pays for it.
	//
	// A replay is the first branch: one primary-key read, no lock, no
	// write. Anything else falls through to idem_claim (migration 0002),
	// which reads the record again and claims it if it may. LIMIT 1 stops
	// the Append once the first branch has its row, so the executor never
	// calls the function on a replay. A claim that finds nothing at all, a
	// record another transaction created after the function's snapshot,
	// comes back as no row.
	claim := fill(`
(SELECT 2, r.fence, false, r.outcome, 0::bigint FROM {{table}} r
 WHERE r.key = {{key}} AND r.state = 'c' AND r.fingerprint = {{fingerprint}} AND r.expires_at > statement_timestamp())
UNION ALL
(SELECT * FROM {{claim}}({{claim_key}}, {{owner}}, {{fingerprint}}, {{lease_ms}}, {{retention_ms}}))
LIMIT 1`)
	claimOf := func(key, claimKey, owner, fingerprint, leaseMs, retentionMs string) string {
		return strings.NewReplacer("{{key}}", key, "{{claim_key}}", claimKey, "{{owner}}", owner,
			"{{fingerprint}}", fingerprint, "{{lease_ms}}", leaseMs, "{{retention_ms}}", retentionMs).Replace(claim)
	}
	// What a lone completion sets. idem_complete (migration 0005), which
	// batches and RunTx call, sets the same and must change with it; a lone
	// completion stays a plain UPDATE, without the PL/pgSQL call. The
	// owner stays, for completedBy.
	completed := `state = 'c', outcome = %s, lease_until = NULL,
	expires_at = statement_timestamp() + retention_ms * interval '1 millisecond'`

	return statements{
		// $1 key, $2 owner, $3 fingerprint, $4 lease ms, $5 retention ms.
		claim:      claimOf("$1::text", "$1::text", "$2::text", "$3::text", "$4::bigint", "$5::bigint"),
		claimTimed: claimOf("$1::text", lockTimeout("$1::text"), "$2::text", "$3::text", "$4::bigint", "$5::bigint"),

		// The same five as arrays, one element per claim, answered by
		// position (i, from 1). The claims run in array order, each seeing
		// the ones before it; a claim that comes back as no row has none.
		claimMany: `
SELECT a.i, c.* FROM unnest(` + lockTimeout("$1::text[]") + `, $2::text[], $3::text[], $4::bigint[], $5::bigint[])
	WITH ORDINALITY AS a(key, owner, fingerprint, lease_ms, retention_ms, i)
CROSS JOIN LATERAL (` + claimOf("a.key", "a.key", "a.owner", "a.fingerprint", "a.lease_ms", "a.retention_ms") + `) c`,

		// $1 key, $2 owner, $3 fence.
		renew: fill(`
UPDATE {{table}} SET
	lease_until = statement_timestamp() + lease_ms * interval '1 millisecond',
	expires_at = statement_timestamp() + (lease_ms + retention_ms) * interval '1 millisecond'
WHERE key = $1 AND state = 'p' AND owner = $2 AND fence = $3`),

		// $1 key, $2 owner, $3 fence, $4 outcome. A row, whether anyone
		// waits, when $2 held the fence; none otherwise. Nothing else: a
		// plain UPDATE of columns no index covers, which PostgreSQL makes
		// in place. The NOTIFY, when someone waits, is a statement of its
		// own (end).
		complete: fill(`
UPDATE {{table}} SET ` + fmt.Sprintf(completed, "$4") + `
WHERE key = $1 AND state = 'p' AND owner = $2 AND fence = $3
RETURNING waited`),
		// The lock timeout rides in the new outcome: the executor works out
		// the new row before it locks the old one, and a volatile key
		// would cost the index.
		completeTimed: fill(`
UPDATE {{table}} SET ` + fmt.Sprintf(completed, lockTimeout("$4::bytea")) + `
WHERE key = $1 AND state = 'p' AND owner = $2 AND fence = $3
RETURNING waited`),

		// The same four as arrays, run in array order (migration 0004): a
		// row for each completion, by position (i, from 1), saying whether
		// anyone waits, or NULL when its fence was not current.
		completeMany: fill(`
SELECT a.i, {{complete}}(a.key, a.owner, a.fence, a.outcome)
FROM unnest(` + lockTimeout("$1::text[]") + `, $2::text[], $3::bigint[], $4::bytea[]) WITH ORDINALITY AS a(key, owner, fence, outcome, i)`),

		// $1 key, $2 owner: the claim's fence when that owner holds the
		// record.
		claimedBy: fill(`SELECT fence, took_over FROM {{table}} WHERE key = $1 AND state = 'p' AND owner = $2`),

		// $1 key, $2 owner, $3 fence, $4 outcome: a row, whether anyone
		// waited, when $2 completed the record with that fence and outcome.
		completedBy: fill(`
SELECT waited FROM {{table}}
WHERE key = $1 AND state = 'c' AND owner = $2 AND fence = $3 AND outcome IS NOT DISTINCT FROM $4`),

		// $1 channel, $2 keys: wakes their waiters.
		notify: `SELECT pg_notify($1, k) FROM unnest($2::text[]) k`,

		// As complete, in the transaction holding the claim (RunTx): it
		// raises (SQLSTATE IDM01) instead of updating nothing, so that a
		// COMMIT queued behind it rolls back.
		completeInTx: fill(`SELECT {{complete_held}}($1, $2, $3, $4, $5)`),

		// $1 key, $2 owner, $3 fence. As complete.
		release: fill(`
UPDATE {{table}} SET
	state = 'f', owner = NULL, fingerprint = NULL, lease_until = NULL, outcome = NULL,
	expires_at = statement_timestamp() + retention_ms * interval '1 millisecond'
WHERE key = $1 AND state = 'p' AND owner = $2 AND fence = $3
RETURNING waited`),

		// $1 key, $2 fence: marks the record as waited on while it is still
		// in progress with that fence.
		wait: fill(`UPDATE {{table}} SET waited = true WHERE key = $1 AND state = 'p' AND fence = $2`),

		// $1 the last key of the previous batch ('' to start), $2 batch
		// size. Deletes the expired records among the next $2 keys and
		// returns the batch's last key (NULL past the end) and how many it
		// deleted. A record some transaction holds is skipped, not waited
		// for: it is in use, and the next sweep will see it again.
		reap: fill(`
WITH batch AS (
	SELECT key FROM {{table}} WHERE key > $1 ORDER BY key LIMIT $2
), gone AS (
	DELETE FROM {{table}} WHERE key IN (
		SELECT r.key FROM {{table}} r JOIN batch USING (key)
		WHERE r.expires_at <= statement_timestamp()
		FOR UPDATE OF r SKIP LOCKED)
	RETURNING 1
)
SELECT (SELECT max(key) FROM batch), (SELECT count(*) FROM gone)`),
	}
}

// op bounds one store statement by OpTimeout.
func (s *Store) op(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.OpTimeout)
}

// Claim implements store.Store.
func (s *Store) Claim(ctx context.Context, p store.ClaimParams) (store.ClaimResult, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	cr, err := s.writes.Do(ctx, write{claim: &p})
	if errors.Is(err, errAlone) {
		return s.claimAlone(ctx, p)
	}
	return cr, s.answered(ctx, "claim", err)
}

// claimAlone runs a claim on its own, after its batch could not. As with
// completeAlone, the batch may have committed it all the same; a record in
// progress under the claim's owner is then the claim's: the engine hands a
// claim a new owner after any claim that acquired or failed. Without this
// check it would find its own claim in flight, and its key would wait a
// whole lease. When the check itself fails (the call's time ran out on
// the claim), the claim is reported in flight, as it was found. Test:
// TestClaimAfterItsBatchFailed.
func (s *Store) claimAlone(ctx context.Context, p store.ClaimParams) (store.ClaimResult, error) {
	cr, err := s.claimOne(ctx, s.sql.claim, p)
	if err != nil || cr.Status != store.ClaimInFlight {
		return cr, err
	}
	var (
		fence    int64
		tookOver bool
	)
	if err := s.pool.QueryRow(ctx, s.sql.claimedBy, p.Key, p.Owner).Scan(&fence, &tookOver); err != nil {
		return cr, nil
	}
	return store.ClaimResult{
		Status:   store.ClaimAcquired,
		Lease:    store.Lease{Key: p.Key, Owner: p.Owner, Fence: fence},
		TookOver: tookOver,
	}, nil
}

// querier runs the claim on the pool or in a transaction.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// claimIn runs stmt, a single-key claim statement, on q. A record that
// another transaction created after the statement's snapshot is invisible
// to its second branch: that comes back as no row, and is reported in
// flight with no fence, so the engine looks again at once.
func (s *Store) claimIn(ctx context.Context, q querier, stmt string, p store.ClaimParams) (store.ClaimResult, error) {
	var r claimRow
	err := q.QueryRow(ctx, stmt, p.Key, p.Owner, p.Fingerprint, p.LeaseTTL.Milliseconds(), p.Retention.Milliseconds()).
		Scan(r.fields()...)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return unseen(p), nil
	case err != nil:
		return store.ClaimResult{}, err
	}
	return r.result(p)
}

// claimRow is the claim statement's answer for one key.
type claimRow struct {
	status   int
	fence    int64
	tookOver bool
	outcome  []byte
	leftMs   int64
}

func (r *claimRow) fields() []any {
	return []any{&r.status, &r.fence, &r.tookOver, &r.outcome, &r.leftMs}
}

func (r *claimRow) result(p store.ClaimParams) (store.ClaimResult, error) {
	switch r.status {
	case 1:
		return store.ClaimResult{
			Status:   store.ClaimAcquired,
			Lease:    store.Lease{Key: p.Key, Owner: p.Owner, Fence: r.fence},
			TookOver: r.tookOver,
		}, nil
	case 2:
		return store.ClaimResult{Status: store.ClaimCompleted, Outcome: r.outcome}, nil
	case 3:
		return store.ClaimResult{
			Status:     store.ClaimInFlight,
			Lease:      store.Lease{Key: p.Key, Fence: r.fence},
			RetryAfter: time.Duration(r.leftMs) * time.Millisecond,
		}, nil
	case 4:
		return store.ClaimResult{Status: store.ClaimMismatch}, nil
	}
	return store.ClaimResult{}, fmt.Errorf("unexpected claim status %d", r.status)
}

// unseen is the answer for a claim that found no row: a record created
// after the statement's snapshot, in flight as far as the caller can tell.
func unseen(p store.ClaimParams) store.ClaimResult {
	return store.ClaimResult{Status: store.ClaimInFlight, Lease: store.Lease{Key: p.Key}}
}

// Renew implements store.Store.
func (s *Store) Renew(ctx context.Context, l store.Lease) error {
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

// Complete implements store.Store.
func (s *Store) Complete(ctx context.Context, l store.Lease, outcome []byte) error {
	ctx, cancel := s.op(ctx)
	defer cancel()
	_, err := s.writes.Do(ctx, write{done: completion{l, outcome}})
	if errors.Is(err, errAlone) {
		return s.completeAlone(ctx, l, outcome)
	}
	return s.answered(ctx, "complete", err)
}

// completeAlone runs a completion on its own, after its batch could not.
// The batch may have committed it all the same: a deadline that cuts a
// batch short, another caller's, can come after its COMMIT was sent. So a
// completion that finds its own outcome recorded under its owner and
// fence succeeds, and wakes the record's waiters, whom the batch did not.
// The owner is what makes it the caller's: owners are unique per acquired
// lease, while a record reaped and claimed anew starts its fences again.
// Test: TestCompletionAfterItsBatchFailed.
func (s *Store) completeAlone(ctx context.Context, l store.Lease, outcome []byte) error {
	err := s.end(ctx, "complete", l, s.sql.complete, outcome)
	if !errors.Is(err, idem.ErrLeaseLost) {
		return err
	}
	var waited bool
	switch e := s.pool.QueryRow(ctx, s.sql.completedBy, l.Key, l.Owner, l.Fence, outcome).Scan(&waited); {
	case errors.Is(e, pgx.ErrNoRows):
		return err
	case e != nil:
		return s.failed("complete", e)
	}
	if waited {
		s.notify(ctx, "complete", l.Key)
	}
	return nil
}

// Release implements store.Store.
func (s *Store) Release(ctx context.Context, l store.Lease) error {
	ctx, cancel := s.op(ctx)
	defer cancel()
	return s.end(ctx, "release", l, s.sql.release)
}

// end runs stmt, a statement that ends l's fence, retrying lost races, and
// reports ErrLeaseLost when the fence was not current. If someone waits on
// the fence it then notifies them, after the commit: a notification lost
// to a crash in between is covered by the waiters' polls.
func (s *Store) end(ctx context.Context, op string, l store.Lease, stmt string, extra ...any) error {
	args := append([]any{l.Key, l.Owner, l.Fence}, extra...)
	var ended, waited bool
	err := s.retry(ctx, func() error {
		err := s.pool.QueryRow(ctx, stmt, args...).Scan(&waited)
		ended = err == nil
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		return err
	})
	if err != nil {
		return s.failed(op, err)
	}
	if !ended {
		return idem.ErrLeaseLost
	}
	if waited {
		s.notify(ctx, op, l.Key)
	}
	return nil
}

// notify wakes the waiters of keys, after op committed. A notification
// lost here is covered by the waiters' polls.
func (s *Store) notify(ctx context.Context, op string, keys ...string) {
	if _, err := s.pool.Exec(ctx, s.sql.notify, s.channel, keys); err != nil {
		s.cfg.Logger.Warn("pgstore: notifying waiters failed; they will see the records at their next poll",
			slog.String("op", op), slog.Int("records", len(keys)), slog.Any("error", err))
	}
}

// Wait implements store.Store.
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

// Reap sweeps the whole table once in key order, ReapBatch records at a
// time, deletes the expired ones and reports how many it deleted. Each batch
// is one statement of its own, so claims interleave with a long sweep.
func (s *Store) Reap(ctx context.Context) (int64, error) {
	var deleted int64
	after := ""
	for {
		var (
			last *string
			n    int64
		)
		opCtx, cancel := s.op(ctx)
		err := s.pool.QueryRow(opCtx, s.sql.reap, after, s.cfg.ReapBatch).Scan(&last, &n)
		cancel()
		if err != nil {
			return deleted, s.failed("reap", err)
		}
		deleted += n
		if last == nil {
			return deleted, nil
		}
		after = *last
	}
}

// Conflict implements store.TxStore: a serialization failure or a deadlock.
func (s *Store) Conflict(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40001" || pgErr.Code == "40P01")
}

// Transient implements store.TxStore: the database failing under fn
// rather than fn's answer, recorded by no RunTx: a lock, statement or
// idle-in-transaction timeout (55P03, 57014, 25P03), a connection lost or
// refused (class 08, an operator or crash shutdown, 57P01 to 57P05, or no
// PostgreSQL error at all but the connection's), resources exhausted
// (class 53) (TestDatabaseFailuresInFnAreNotRecorded).
func (s *Store) Transient(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return pgconn.SafeToRetry(err) || pgconn.Timeout(err) || isConnectionError(err)
	}
	switch code := pgErr.Code; {
	case code == "55P03", code == "57014", code == "25P03":
		return true
	case strings.HasPrefix(code, "08"), strings.HasPrefix(code, "53"), strings.HasPrefix(code, "57P"):
		return true
	}
	return false
}

// isConnectionError reports whether err says the connection to PostgreSQL
// is gone: closed, reset, or never made.
func isConnectionError(err error) bool {
	var netErr net.Error
	var connectErr *pgconn.ConnectError
	return errors.As(err, &netErr) || errors.As(err, &connectErr) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)
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
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "42P01":
		return fmt.Errorf("pgstore: %s: the store's table is missing in schema %q; call Migrate first: %w", op, s.cfg.Schema, err)
	case errors.As(err, &pgErr) && pgErr.Code == "IDM01":
		return fmt.Errorf("pgstore: %s: the claim vanished from its own transaction: %w", op, idem.ErrLeaseLost)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("pgstore: %s: no reply in time (OpTimeout %s): %w", op, s.cfg.OpTimeout, err)
	}
	return fmt.Errorf("pgstore: %s: %w", op, err)
}
