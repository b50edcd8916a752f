package payments

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// statements are payd's SQL for one dialect.
type statements struct {
	upsertAccount, accountByKey, accountIs          string
	insertPayment, getPayment, listByReference      string
	claimDue, claimPending, settle, settleByKey     string
	countDue                                        string
	settleAndPost                                   string // PostgreSQL only
	reserveRefund, insertRefund, refundsOf          string
	claimDueRefund, settleRefund, settleRefundByKey string
	releaseRefund                                   string
	insertTxn, insertEntries, addBalances, balances string
	audit, auditOf                                  string
	paymentByKey, refundByKey, createdIn            string
	paymentsByKeys, refundsByKeys                   string
	succeededPayments, succeededRefunds             string
	holdByKey, holdRefundByKey                      string
	recordMismatch, resolveMismatch, openMismatches string
	mismatchByID                                    string
	insertRun, lastRun                              string
	correctPayment, correctRefund, adjustRefunded   string
	postedTxn                                       string
}

const refundColumns = `id, payment_id, account_id, amount, currency, charge_id, state, fence, attempts, provider_key,
	coalesce(provider_refund_id, ''), coalesce(failure_code, ''), coalesce(failure_message, ''), coalesce(hold, ''),
	created_at, updated_at`

// claimSQL claims the row of table due first: pending, retrying or unknown
// and due, or processing under an expired lease, and never held. The
// fence grows, and the lease is $1 ms from now by the database's clock. A
// claim that takes over an expired lease moves sent_at to that lease's
// end: its worker may have sent a request until then (its calls end with
// its lease). It returns columns, the state claimed from, the row's age,
// the ms since sent_at (-1 if none can have been sent), and whether
// another row was due too (as the statement saw the table), so a worker
// knows to claim again.
func claimSQL(d dialect, table, columns string) string {
	due := func(row string) string {
		return row + `.state IN ('pending', 'processing', 'retry_scheduled', 'unknown') AND ` + row + `.next_attempt_at <= {{now}} AND ` +
			row + `.hold IS NULL`
	}
	return d.sql(`
UPDATE ` + table + ` SET
	claimed_from = state, state = 'processing', fence = fence + 1, attempts = attempts + 1,
	sent_at = CASE WHEN state = 'processing' AND (sent_at IS NULL OR sent_at < lease_until) THEN lease_until ELSE sent_at END,
	lease_until = {{now}} + $1, next_attempt_at = {{now}} + $1, updated_at = {{now}}
WHERE id = (
	SELECT id FROM ` + table + ` WHERE ` + due(table) + `
	ORDER BY next_attempt_at
	LIMIT 1{{skip_locked}})
RETURNING ` + columns + `, claimed_from, {{now}} - created_at, coalesce({{now}} - sent_at, -1),
	EXISTS (SELECT 1 FROM ` + table + ` AS other WHERE ` + due("other") + ` AND other.id <> ` + table + `.id)`)
}

// settleSQL records a worker's outcome for a row of table if the fence is
// still the caller's: $1 id, $2 fence, $3 state, $4 provider id, $5 and $6
// failure, $7 ms until due again (for retry_scheduled and unknown), $8
// whether the attempt may have left a request at the provider (sent_at
// becomes now), $9 the hold, or NULL.
func settleSQL(d dialect, table, providerID, returning string) string {
	return d.sql(`
UPDATE ` + table + ` SET
	state = $3, ` + providerID + ` = coalesce($4, ` + providerID + `), failure_code = $5, failure_message = $6,
	sent_at = CASE WHEN $8 THEN {{now}} ELSE sent_at END, hold = $9,
	lease_until = NULL, next_attempt_at = {{now}} + $7, updated_at = {{now}}
WHERE id = $1 AND fence = $2 AND state = 'processing'
RETURNING ` + returning)
}

// settleAndPostSQL is settle for a payment, and the ledger's charge
// transaction when the outcome is success, in one statement: one round trip
// and one commit where a transaction of its statements takes six. Its
// parameters are settle's, then $10 the journal transaction's id and $11
// the balance slot. Like post, it posts a transaction at most once and
// moves the two balances in account order. PostgreSQL only: SQLite has no
// data-modifying WITH. It returns the settled payment. A hold is recorded
// with its mismatch, so it takes settle's transaction instead.
func settleAndPostSQL(d dialect) string {
	if d.name != "postgres" {
		return ""
	}
	return d.sql(`
WITH settled AS (
	UPDATE payments SET
		state = $3, provider_charge_id = coalesce($4, provider_charge_id), failure_code = $5, failure_message = $6,
		sent_at = CASE WHEN $8 THEN {{now}} ELSE sent_at END, hold = $9,
		lease_until = NULL, next_attempt_at = {{now}} + $7, updated_at = {{now}}
	WHERE id = $1 AND fence = $2 AND state = 'processing'
	RETURNING ` + paymentColumns + `
), legs AS (
	SELECT settled.id, settled.currency, leg.line, leg.account, leg.amount
	FROM settled CROSS JOIN LATERAL (VALUES
		(1, '` + clearingAccount + `', settled.amount),
		(2, 'merchant:' || settled.account_id, -settled.amount)) AS leg (line, account, amount)
	WHERE settled.state = 'succeeded'
), txn AS (
	INSERT INTO ledger_transactions (id, kind, ref, created_at)
	SELECT $10, '` + txnCharge + `', id, {{now}} FROM settled WHERE state = 'succeeded'
	ON CONFLICT (kind, ref) DO NOTHING
	RETURNING id
), entries AS (
	INSERT INTO ledger_entries (txn_id, line, account, currency, amount, created_at)
	SELECT txn.id, legs.line, legs.account, legs.currency, legs.amount, {{now}} FROM txn, legs
), balances AS (
	INSERT INTO ledger_balances (account, currency, slot, balance)
	SELECT legs.account, legs.currency, $11, legs.amount FROM txn, legs ORDER BY legs.account
	ON CONFLICT (account, currency, slot) DO UPDATE SET balance = ledger_balances.balance + excluded.balance
)
SELECT * FROM settled`)
}

// settleByKeySQL records a final outcome, found by a webhook or
// reconciliation, for the row of table with provider key $1 unless it is
// final already, lifts its hold (the caller has checked the provider's
// record against it), and bumps the fence so the worker holding it is
// refused: $2 state, $3 provider id, $4 and $5 failure.
func settleByKeySQL(d dialect, table, providerID, returning string) string {
	return d.sql(`
UPDATE ` + table + ` SET
	state = $2, ` + providerID + ` = coalesce($3, ` + providerID + `), failure_code = $4, failure_message = $5,
	hold = NULL, fence = fence + 1, lease_until = NULL, next_attempt_at = {{now}}, updated_at = {{now}}
WHERE provider_key = $1 AND state NOT IN ('succeeded', 'failed')
RETURNING ` + returning)
}

// holdByKeySQL holds the row of table with provider key $1 unless it is
// final: unknown, held by $2, its fence bumped so the worker holding it is
// refused. A live lease's end moves into sent_at, as a claim's does: its
// worker may send until then.
func holdByKeySQL(d dialect, table string) string {
	return d.sql(`
UPDATE ` + table + ` SET
	state = 'unknown', hold = $2, fence = fence + 1,
	sent_at = CASE WHEN state = 'processing' AND (sent_at IS NULL OR sent_at < lease_until) THEN lease_until ELSE sent_at END,
	lease_until = NULL, next_attempt_at = {{now}}, updated_at = {{now}}
WHERE provider_key = $1 AND state NOT IN ('succeeded', 'failed')
RETURNING id`)
}

// correctSQL is an operator's correction of the row of table: see
// correctPayment. $7, unless it is negative, is the provider's longest
// processing time in ms: the row is changed only if no request under its
// key can be outstanding, none sent within it and no worker's lease live.
// extra is a further condition.
func correctSQL(d dialect, table, providerID, extra string) string {
	return d.sql(`
UPDATE ` + table + ` SET
	state = $3, ` + providerID + ` = coalesce($4, ` + providerID + `), failure_code = $5, failure_message = $6,
	hold = NULL, fence = fence + 1, lease_until = NULL, next_attempt_at = {{now}}, updated_at = {{now}}
WHERE id = $1 AND state = $2` + extra + `
	AND ($7 < 0 OR ((sent_at IS NULL OR sent_at < {{now}} - $7) AND (lease_until IS NULL OR lease_until < {{now}})))`)
}

const paymentColumns = `id, account_id, amount, currency, reference, description, metadata, state, fence, attempts,
	provider_key, coalesce(provider_charge_id, ''), coalesce(failure_code, ''), coalesce(failure_message, ''),
	amount_refunded, coalesce(hold, ''), created_at, updated_at`

func newStatements(d dialect) statements {
	return statements{
		upsertAccount: d.sql(`
INSERT INTO accounts (id, name, api_key_hash, created_at) VALUES ($1, $2, $3, {{now}})
ON CONFLICT (id) DO UPDATE SET name = excluded.name, api_key_hash = excluded.api_key_hash`),
		accountByKey: d.sql(`SELECT id FROM accounts WHERE api_key_hash = $1`),
		accountIs:    d.sql(`SELECT count(*) FROM accounts WHERE id = $1 AND name = $2 AND api_key_hash = $3`),

		insertPayment: d.sql(`
INSERT INTO payments (id, account_id, amount, currency, reference, description, metadata, state,
	next_attempt_at, provider_key, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', {{now}} + $9, $8, {{now}}, {{now}})
RETURNING ` + paymentColumns),
		getPayment: d.sql(`SELECT ` + paymentColumns + ` FROM payments WHERE id = $1 AND account_id = $2`),
		listByReference: d.sql(`
SELECT ` + paymentColumns + ` FROM payments
WHERE account_id = $1 AND reference = $2 AND (created_at, id) > ($3, $4)
ORDER BY created_at, id
LIMIT $5`),

		claimDue: claimSQL(d, "payments", paymentColumns),
		claimPending: d.sql(`
UPDATE payments SET
	claimed_from = state, state = 'processing', fence = fence + 1, attempts = attempts + 1,
	lease_until = {{now}} + $1, next_attempt_at = {{now}} + $1, updated_at = {{now}}
WHERE id = $2 AND state = 'pending' AND hold IS NULL
RETURNING ` + paymentColumns + `, claimed_from, {{now}} - created_at, -1, false`),
		settle:        settleSQL(d, "payments", "provider_charge_id", paymentColumns),
		settleByKey:   settleByKeySQL(d, "payments", "provider_charge_id", "id, account_id, amount, currency"),
		settleAndPost: settleAndPostSQL(d),

		countDue: d.sql(`
SELECT (SELECT count(*) FROM payments WHERE state IN ('pending', 'processing', 'retry_scheduled', 'unknown'))
	+ (SELECT count(*) FROM refunds WHERE state IN ('pending', 'processing', 'retry_scheduled', 'unknown'))`),

		// reserveRefund takes $3 from what is left to refund of a succeeded
		// payment, atomically: the row's lock makes concurrent refunds
		// queue, and each sees the amount the last one left.
		reserveRefund: d.sql(`
UPDATE payments SET amount_refunded = amount_refunded + $3, updated_at = {{now}}
WHERE id = $1 AND account_id = $2 AND state = 'succeeded' AND amount_refunded + $3 <= amount
RETURNING currency, coalesce(provider_charge_id, '')`),
		insertRefund: d.sql(`
INSERT INTO refunds (id, payment_id, account_id, amount, currency, charge_id, state, next_attempt_at, provider_key, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, 'pending', {{now}}, $7, {{now}}, {{now}})
RETURNING ` + refundColumns),
		refundsOf:         d.sql(`SELECT ` + refundColumns + ` FROM refunds WHERE payment_id = $1 ORDER BY created_at, id`),
		claimDueRefund:    claimSQL(d, "refunds", refundColumns),
		settleRefund:      settleSQL(d, "refunds", "provider_refund_id", "payment_id, account_id, amount, currency"),
		settleRefundByKey: settleByKeySQL(d, "refunds", "provider_refund_id", "id, payment_id, account_id, amount, currency"),
		releaseRefund:     d.sql(`UPDATE payments SET amount_refunded = amount_refunded - $2, updated_at = {{now}} WHERE id = $1`),

		insertTxn: d.sql(`
INSERT INTO ledger_transactions (id, kind, ref, created_at) VALUES ($1, $2, $3, {{now}})
ON CONFLICT (kind, ref) DO NOTHING
RETURNING id`),
		insertEntries: d.sql(`
INSERT INTO ledger_entries (txn_id, line, account, currency, amount, created_at)
VALUES ($1, 1, $2, $4, $5, {{now}}), ($1, 2, $3, $4, $6, {{now}})`),
		addBalances: d.sql(`
INSERT INTO ledger_balances (account, currency, slot, balance) VALUES ($1, $3, $6, $4), ($2, $3, $6, $5)
ON CONFLICT (account, currency, slot) DO UPDATE SET balance = ledger_balances.balance + excluded.balance`),
		// balances are credit balances, shown as positive amounts.
		balances: d.sql(`
SELECT currency,
	CAST(-coalesce(sum(CASE WHEN account = $1 THEN balance END), 0) AS bigint),
	CAST(-coalesce(sum(CASE WHEN account = $2 THEN balance END), 0) AS bigint)
FROM ledger_balances WHERE account IN ($1, $2)
GROUP BY currency ORDER BY currency`),

		audit:   d.sql(`INSERT INTO audit_log (id, at, actor, action, payment_id, detail) VALUES ($1, {{now}}, $2, $3, $4, $5)`),
		auditOf: d.sql(`SELECT id, at, actor, action, payment_id, detail FROM audit_log WHERE payment_id = $1 ORDER BY at, id`),

		paymentByKey: d.sql(`SELECT ` + paymentColumns + ` FROM payments WHERE provider_key = $1`),
		refundByKey:  d.sql(`SELECT ` + refundColumns + ` FROM refunds WHERE provider_key = $1`),
		createdIn:    d.sql(`SELECT ` + paymentColumns + ` FROM payments WHERE created_at >= $1 AND created_at < $2`),
		// The keys of one page of a provider listing, as a JSON array:
		// one statement for the page whatever its length, on both
		// databases.
		paymentsByKeys: d.sql(`SELECT ` + paymentColumns + ` FROM payments WHERE provider_key IN ` + d.jsonStrings("$1")),
		refundsByKeys:  d.sql(`SELECT ` + refundColumns + ` FROM refunds WHERE provider_key IN ` + d.jsonStrings("$1")),
		// Succeeded payments and refunds created in [$1, $2), a page of $5
		// after ($3, $4) in (created_at, id) order.
		succeededPayments: d.sql(`
SELECT ` + paymentColumns + ` FROM payments
WHERE state = 'succeeded' AND created_at >= $1 AND created_at < $2 AND (created_at, id) > ($3, $4)
ORDER BY created_at, id LIMIT $5`),
		succeededRefunds: d.sql(`
SELECT ` + refundColumns + ` FROM refunds
WHERE state = 'succeeded' AND created_at >= $1 AND created_at < $2 AND (created_at, id) > ($3, $4)
ORDER BY created_at, id LIMIT $5`),
		holdByKey:       holdByKeySQL(d, "payments"),
		holdRefundByKey: holdByKeySQL(d, "refunds"),
		// A mismatch found again keeps when it was first found, unless it
		// had been resolved meanwhile.
		recordMismatch: d.sql(`
INSERT INTO reconciliation_mismatches (id, kind, provider_key, account_id, payment_id, refund_id, provider_id, detail, subject_at, found_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, {{now}})
ON CONFLICT (kind, provider_key) DO UPDATE SET
	account_id = excluded.account_id, payment_id = excluded.payment_id, refund_id = excluded.refund_id,
	provider_id = excluded.provider_id, detail = excluded.detail,
	found_at = CASE WHEN reconciliation_mismatches.resolved_at IS NULL THEN reconciliation_mismatches.found_at ELSE excluded.found_at END,
	resolved_at = NULL`),
		resolveMismatch: d.sql(`
UPDATE reconciliation_mismatches SET resolved_at = {{now}}
WHERE kind = $1 AND provider_key = $2 AND resolved_at IS NULL`),
		openMismatches: d.sql(`
SELECT ` + mismatchColumns + `
FROM reconciliation_mismatches WHERE resolved_at IS NULL ORDER BY found_at, id`),
		mismatchByID: d.sql(`SELECT ` + mismatchColumns + ` FROM reconciliation_mismatches WHERE id = $1`),

		// An operator's correction of $1, if it is still in state $2: to $3,
		// with $4 provider id and $5, $6 failure; a hold is lifted and the
		// fence bumped, so a worker still calling the provider is refused.
		// A succeeded payment is corrected only while it has no refund:
		// one accepted after Correct looked is caught here.
		correctPayment: correctSQL(d, "payments", "provider_charge_id", " AND (state <> 'succeeded' OR amount_refunded = 0)"),
		correctRefund:  correctSQL(d, "refunds", "provider_refund_id", ""),
		adjustRefunded: d.sql(`
UPDATE payments SET amount_refunded = amount_refunded + $2, updated_at = {{now}}
WHERE id = $1 AND amount_refunded + $2 >= 0 AND amount_refunded + $2 <= amount
RETURNING id`),
		postedTxn: d.sql(`SELECT count(*) FROM ledger_transactions WHERE kind = $1 AND ref = $2`),
		insertRun: d.sql(`
INSERT INTO reconciliation_runs (id, started_at, finished_at, window_from, window_to, provider_charges, provider_refunds, matched, fixed, mismatches)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`),
		lastRun: d.sql(`
SELECT id, started_at, finished_at, window_from, window_to, provider_charges, provider_refunds, matched, fixed, mismatches
FROM reconciliation_runs ORDER BY finished_at DESC, id LIMIT 1`),
	}
}

// hashKey is how API keys are stored: SHA-256, hex. Keys are random and
// long, so a fast hash is enough.
func hashKey(apiKey string) string {
	sum := sha256.Sum256([]byte(apiKey))
	return hex.EncodeToString(sum[:])
}

// EnsureAccount creates or updates the account id, reached with apiKey.
// An account already so, as on every restart with the same key, is not
// written. It is startup work, bounded by ctx alone: while SQLite stays
// busy past the write queue's bound (another process holds its write
// lock, perhaps one stopped mid-write), it logs and tries again
// (TestEnsureAccountWaitsOutABusyDatabase).
func (s *Store) EnsureAccount(ctx context.Context, id, name, apiKey string) error {
	hash := hashKey(apiKey)
	var n int
	if err := s.pool.queryRow(ctx, s.sql.accountIs, id, name, hash).Scan(&n); err != nil || n == 1 {
		return wrap("ensure account", err)
	}
	for {
		err := s.execWrite(ctx, s.sql.upsertAccount, id, name, hash)
		if err == nil || s.busy == nil || !s.busy(err) || ctx.Err() != nil {
			return wrap("ensure account", err)
		}
		s.log.WarnContext(ctx, "payments: database busy, another process holds its write lock; trying again to write the account",
			"account", id, "err", err)
	}
}

// AccountByKey returns the account an API key belongs to, or ErrNotFound.
func (s *Store) AccountByKey(ctx context.Context, apiKey string) (string, error) {
	var id string
	err := s.pool.queryRow(ctx, s.sql.accountByKey, hashKey(apiKey)).Scan(&id)
	if errors.Is(err, errNoRows) {
		return "", ErrNotFound
	}
	return id, wrap("find account", err)
}

// Create inserts a pending payment: from then on it is due work. Under
// Middleware it writes in the request's transaction, so the payment and the
// request's recorded response commit together.
func (s *Store) Create(ctx context.Context, np NewPayment) (*Payment, error) {
	id := newID("ch_")
	var p *Payment
	err := s.inRequestTx(ctx, func(q querier) (err error) {
		p, err = scanPayment(q.queryRow(ctx, s.sql.insertPayment,
			id, np.AccountID, np.Amount, np.Currency, np.Reference, np.Description, encodeMetadata(np.Metadata),
			"payd_"+id, np.Reserve.Milliseconds()))
		return err
	})
	return p, wrap("create payment", err)
}

// Get returns the account's payment id, or ErrNotFound.
func (s *Store) Get(ctx context.Context, accountID, id string) (*Payment, error) {
	p, err := scanPayment(s.pool.queryRow(ctx, s.sql.getPayment, id, accountID))
	if errors.Is(err, errNoRows) {
		return nil, ErrNotFound
	}
	return p, wrap("get payment", err)
}

// Page is a cursor into a listing: the last payment seen.
type Page struct {
	After string // payment id; "" starts at the beginning
	Limit int
}

// ListByReference returns up to page.Limit of the account's payments with
// reference, oldest first, after the payment page.After, and whether more
// follow.
func (s *Store) ListByReference(ctx context.Context, accountID, reference string, page Page) ([]*Payment, bool, error) {
	afterAt, afterID := int64(-1), ""
	if page.After != "" {
		p, err := s.Get(ctx, accountID, page.After)
		if err != nil {
			return nil, false, fmt.Errorf("payments: list after %s: %w", page.After, err)
		}
		afterAt, afterID = millis(p.CreatedAt), p.ID
	}
	rs, err := s.pool.query(ctx, s.sql.listByReference, accountID, reference, afterAt, afterID, page.Limit+1)
	if err != nil {
		return nil, false, wrap("list payments", err)
	}
	defer rs.Close()
	var out []*Payment
	for rs.Next() {
		p, err := scanPayment(rs)
		if err != nil {
			return nil, false, wrap("list payments", err)
		}
		out = append(out, p)
	}
	if err := rs.Err(); err != nil {
		return nil, false, wrap("list payments", err)
	}
	more := len(out) > page.Limit
	if more {
		out = out[:page.Limit]
	}
	return out, more, nil
}

// Backlog counts payments not yet final.
func (s *Store) Backlog(ctx context.Context) (int64, error) {
	var n int64
	err := s.pool.queryRow(ctx, s.sql.countDue).Scan(&n)
	return n, wrap("count backlog", err)
}

func scanPayment(row scanner, extra ...any) (*Payment, error) {
	var (
		p                Payment
		metadata         string
		created, updated int64
	)
	dest := append([]any{&p.ID, &p.AccountID, &p.Amount, &p.Currency, &p.Reference, &p.Description, &metadata,
		&p.State, &p.Fence, &p.Attempts, &p.ProviderKey, &p.ProviderChargeID, &p.FailureCode, &p.FailureMessage,
		&p.AmountRefunded, &p.Hold, &created, &updated}, extra...)
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	p.Metadata = decodeMetadata(metadata)
	p.CreatedAt, p.UpdatedAt = fromMillis(created), fromMillis(updated)
	return &p, nil
}

// Claim is a payment a worker holds: its fence, the state it was claimed
// from, its age when claimed, by the database's clock, the time since a
// request under its key may last have been sent (negative if none can
// have been), and whether other payments were due then too.
type Claim struct {
	*Payment
	From      string
	Age       time.Duration
	SinceSent time.Duration
	MoreDue   bool
}

// sinceSent converts a claim's ms since sent_at, -1 for none.
func sinceSent(ms int64) time.Duration {
	if ms < 0 {
		return -1
	}
	return time.Duration(ms) * time.Millisecond
}

// ClaimPending claims payment id for lease if it is still pending, as a
// worker does with a payment handed to it (Processor.Dispatch), or returns
// nil.
func (s *Store) ClaimPending(ctx context.Context, id string, lease time.Duration) (*Claim, error) {
	return s.claimPayment(ctx, s.sql.claimPending, lease.Milliseconds(), id)
}

// ClaimDue claims the payment due first for lease, or returns nil when
// none is due.
func (s *Store) ClaimDue(ctx context.Context, lease time.Duration) (*Claim, error) {
	return s.claimPayment(ctx, s.sql.claimDue, lease.Milliseconds())
}

func (s *Store) claimPayment(ctx context.Context, stmt string, args ...any) (*Claim, error) {
	var (
		from           string
		ageMs, sinceMs int64
		more           bool
	)
	var p *Payment
	err := s.write(ctx, func(ctx context.Context) (err error) {
		p, err = scanPayment(s.pool.queryRow(ctx, stmt, args...), &from, &ageMs, &sinceMs, &more)
		return err
	})
	if errors.Is(err, errNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, wrap("claim a due payment", err)
	}
	return &Claim{Payment: p, From: from, Age: time.Duration(ageMs) * time.Millisecond, SinceSent: sinceSent(sinceMs), MoreDue: more}, nil
}
