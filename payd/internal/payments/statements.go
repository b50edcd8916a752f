package payments

// statements are payd's SQL for one dialect.
type statements struct {
	insertAccount, accountExists, listAccounts      string
	insertKey, keyByHash, keysOf, revokeKey, keyOf  string
	accountByKey                                    string
	insertPayment, getPayment                       string
	listPayments, listByReference                   string
	claimDue, claimPending, settle, settleByKey     string
	countDue                                        string
	settleAndPost                                   string // PostgreSQL only
	refundable, reserveRefund, insertRefund         string
	refundsOf                                       string
	claimDueRefund, settleRefund, settleRefundByKey string
	releaseRefund                                   string
	insertTxn, insertEntries, addBalances, balances string
	audit, auditOf                                  string
	paymentByKey, refundByKey, createdIn            string
	paymentsByKeys, refundsByKeys                   string
	succeededPayments, succeededRefunds             string
	holdByKey, holdRefundByKey                      string
	recordMismatch, resolveMismatch, openMismatches string
	openMismatchesOf                                string
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
// knows to claim again, and the W3C trace context it was accepted in (empty if
// none), which the worker's trace continues.
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
	EXISTS (SELECT 1 FROM ` + table + ` AS other WHERE ` + due("other") + ` AND other.id <> ` + table + `.id),
	coalesce(traceparent, '')`)
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
// refused: $2 state, $3 provider id, $4 and $5 failure. returning ends
// with the row's trace context, empty if none.
func settleByKeySQL(d dialect, table, providerID, returning string) string {
	return d.sql(`
UPDATE ` + table + ` SET
	state = $2, ` + providerID + ` = coalesce($3, ` + providerID + `), failure_code = $4, failure_message = $5,
	hold = NULL, fence = fence + 1, lease_until = NULL, next_attempt_at = {{now}}, updated_at = {{now}}
WHERE provider_key = $1 AND state NOT IN ('succeeded', 'failed')
RETURNING ` + returning + `, coalesce(traceparent, '')`)
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
	var st statements
	st.accountSQL(d)
	st.paymentSQL(d)
	st.refundSQL(d)
	st.ledgerSQL(d)
	st.reconciliationSQL(d)
	st.correctionSQL(d)
	return st
}

// accountSQL sets the statements of accounts and their API keys. A key
// is found by its hash; accounts.api_key_hash is retired (migration 0005)
// and given $3, a value no hash equals.
func (st *statements) accountSQL(d dialect) {
	st.insertAccount = d.sql(`
INSERT INTO accounts (id, name, api_key_hash, created_at) VALUES ($1, $2, $3, {{now}})
ON CONFLICT (id) DO NOTHING`)
	st.accountExists = d.sql(`SELECT count(*) FROM accounts WHERE id = $1`)
	st.listAccounts = d.sql(`
SELECT a.id, a.name, a.created_at, count(k.id)
FROM accounts a LEFT JOIN api_keys k ON k.account_id = a.id AND k.revoked_at IS NULL
GROUP BY a.id, a.name, a.created_at ORDER BY a.created_at, a.id`)
	st.insertKey = d.sql(`
INSERT INTO api_keys (id, account_id, hash, hint, created_at) VALUES ($1, $2, $3, $4, {{now}})
ON CONFLICT (hash) DO NOTHING`)
	st.keyByHash = d.sql(`SELECT ` + keyColumns + ` FROM api_keys WHERE hash = $1`)
	st.keysOf = d.sql(`SELECT ` + keyColumns + ` FROM api_keys WHERE account_id = $1 ORDER BY created_at, id`)
	st.revokeKey = d.sql(`UPDATE api_keys SET revoked_at = {{now}} WHERE id = $1 AND account_id = $2 AND revoked_at IS NULL`)
	st.keyOf = d.sql(`SELECT count(*) FROM api_keys WHERE id = $1 AND account_id = $2`)
	st.accountByKey = d.sql(`SELECT account_id FROM api_keys WHERE hash = $1 AND revoked_at IS NULL`)
}

// paymentSQL sets the statements of payments.
func (st *statements) paymentSQL(d dialect) {
	st.insertPayment = d.sql(`
INSERT INTO payments (id, account_id, amount, currency, reference, description, metadata, state,
	next_attempt_at, provider_key, traceparent, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', {{now}} + $9, $8, $10, {{now}}, {{now}})
RETURNING ` + paymentColumns)
	st.getPayment = d.sql(`SELECT ` + paymentColumns + ` FROM payments WHERE id = $1 AND account_id = $2`)
	// A page of an account's payments created in [$2, $3), after ($4,
	// $5) in (created_at, id) order, $6 at most; listByReference only
	// those with reference $7.
	st.listPayments = d.sql(`
SELECT ` + paymentColumns + ` FROM payments
WHERE account_id = $1 AND created_at >= $2 AND created_at < $3 AND (created_at, id) > ($4, $5)
ORDER BY created_at, id
LIMIT $6`)
	st.listByReference = d.sql(`
SELECT ` + paymentColumns + ` FROM payments
WHERE account_id = $1 AND reference = $7 AND created_at >= $2 AND created_at < $3 AND (created_at, id) > ($4, $5)
ORDER BY created_at, id
LIMIT $6`)
	st.claimDue = claimSQL(d, "payments", paymentColumns)
	st.claimPending = d.sql(`
UPDATE payments SET
	claimed_from = state, state = 'processing', fence = fence + 1, attempts = attempts + 1,
	lease_until = {{now}} + $1, next_attempt_at = {{now}} + $1, updated_at = {{now}}
WHERE id = $2 AND state = 'pending' AND hold IS NULL
RETURNING ` + paymentColumns + `, claimed_from, {{now}} - created_at, -1, false, coalesce(traceparent, '')`)
	st.settle = settleSQL(d, "payments", "provider_charge_id", paymentColumns)
	st.settleByKey = settleByKeySQL(d, "payments", "provider_charge_id", "id, account_id, amount, currency, {{now}} - created_at")
	st.settleAndPost = settleAndPostSQL(d)
	st.countDue = d.sql(`
SELECT (SELECT count(*) FROM payments WHERE state IN ('pending', 'processing', 'retry_scheduled', 'unknown'))
	+ (SELECT count(*) FROM refunds WHERE state IN ('pending', 'processing', 'retry_scheduled', 'unknown'))`)
}

// refundSQL sets the statements of refunds.
func (st *statements) refundSQL(d dialect) {
	// refundable is what is left to refund of a succeeded payment, the
	// row locked until the transaction ends (SQLite's transactions hold
	// the write lock from their start): a reservation of it in the same
	// transaction takes exactly what is left.
	st.refundable = d.sql(`
SELECT amount - amount_refunded FROM payments
WHERE id = $1 AND account_id = $2 AND state = 'succeeded'{{for_update}}`)
	// reserveRefund takes $3 from what is left to refund of a succeeded
	// payment, atomically: the row's lock makes concurrent refunds
	// queue, and each sees the amount the last one left.
	st.reserveRefund = d.sql(`
UPDATE payments SET amount_refunded = amount_refunded + $3, updated_at = {{now}}
WHERE id = $1 AND account_id = $2 AND state = 'succeeded' AND amount_refunded + $3 <= amount
RETURNING currency, coalesce(provider_charge_id, '')`)
	st.insertRefund = d.sql(`
INSERT INTO refunds (id, payment_id, account_id, amount, currency, charge_id, state, next_attempt_at, provider_key, traceparent,
	created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, 'pending', {{now}}, $7, $8, {{now}}, {{now}})
RETURNING ` + refundColumns)
	st.refundsOf = d.sql(`SELECT ` + refundColumns + ` FROM refunds WHERE payment_id = $1 ORDER BY created_at, id`)
	st.claimDueRefund = claimSQL(d, "refunds", refundColumns)
	st.settleRefund = settleSQL(d, "refunds", "provider_refund_id", "payment_id, account_id, amount, currency")
	st.settleRefundByKey = settleByKeySQL(d, "refunds", "provider_refund_id", "id, payment_id, account_id, amount, currency")
	st.releaseRefund = d.sql(`UPDATE payments SET amount_refunded = amount_refunded - $2, updated_at = {{now}} WHERE id = $1`)
}

// ledgerSQL sets the statements of the ledger and the audit log.
func (st *statements) ledgerSQL(d dialect) {
	st.insertTxn = d.sql(`
INSERT INTO ledger_transactions (id, kind, ref, created_at) VALUES ($1, $2, $3, {{now}})
ON CONFLICT (kind, ref) DO NOTHING
RETURNING id`)
	st.insertEntries = d.sql(`
INSERT INTO ledger_entries (txn_id, line, account, currency, amount, created_at)
VALUES ($1, 1, $2, $4, $5, {{now}}), ($1, 2, $3, $4, $6, {{now}})`)
	st.addBalances = d.sql(`
INSERT INTO ledger_balances (account, currency, slot, balance) VALUES ($1, $3, $6, $4), ($2, $3, $6, $5)
ON CONFLICT (account, currency, slot) DO UPDATE SET balance = ledger_balances.balance + excluded.balance`)
	// balances are credit balances, shown as positive amounts.
	st.balances = d.sql(`
SELECT currency,
	CAST(-coalesce(sum(CASE WHEN account = $1 THEN balance END), 0) AS bigint),
	CAST(-coalesce(sum(CASE WHEN account = $2 THEN balance END), 0) AS bigint)
FROM ledger_balances WHERE account IN ($1, $2)
GROUP BY currency ORDER BY currency`)
	st.audit = d.sql(`INSERT INTO audit_log (id, at, actor, action, payment_id, detail) VALUES ($1, {{now}}, $2, $3, $4, $5)`)
	st.auditOf = d.sql(`SELECT id, at, actor, action, payment_id, detail FROM audit_log WHERE payment_id = $1 ORDER BY at, id`)
}

// reconciliationSQL sets the statements of reconciliation: lookups by
// provider key, holds, mismatches and runs.
func (st *statements) reconciliationSQL(d dialect) {
	st.paymentByKey = d.sql(`SELECT ` + paymentColumns + ` FROM payments WHERE provider_key = $1`)
	st.refundByKey = d.sql(`SELECT ` + refundColumns + ` FROM refunds WHERE provider_key = $1`)
	st.createdIn = d.sql(`SELECT ` + paymentColumns + ` FROM payments WHERE created_at >= $1 AND created_at < $2`)
	// The keys of one page of a provider listing, as a JSON array:
	// one statement for the page whatever its length, on both
	// databases.
	st.paymentsByKeys = d.sql(`SELECT ` + paymentColumns + ` FROM payments WHERE provider_key IN ` + d.jsonStrings("$1"))
	st.refundsByKeys = d.sql(`SELECT ` + refundColumns + ` FROM refunds WHERE provider_key IN ` + d.jsonStrings("$1"))
	// Succeeded payments and refunds created in [$1, $2), a page of $5
	// after ($3, $4) in (created_at, id) order.
	st.succeededPayments = d.sql(`
SELECT ` + paymentColumns + ` FROM payments
WHERE state = 'succeeded' AND created_at >= $1 AND created_at < $2 AND (created_at, id) > ($3, $4)
ORDER BY created_at, id LIMIT $5`)
	st.succeededRefunds = d.sql(`
SELECT ` + refundColumns + ` FROM refunds
WHERE state = 'succeeded' AND created_at >= $1 AND created_at < $2 AND (created_at, id) > ($3, $4)
ORDER BY created_at, id LIMIT $5`)
	st.holdByKey = holdByKeySQL(d, "payments")
	st.holdRefundByKey = holdByKeySQL(d, "refunds")
	// A mismatch found again keeps when it was first found, unless it
	// had been resolved meanwhile.
	st.recordMismatch = d.sql(`
INSERT INTO reconciliation_mismatches (id, kind, provider_key, account_id, payment_id, refund_id, provider_id, detail, subject_at, found_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, {{now}})
ON CONFLICT (kind, provider_key) DO UPDATE SET
	account_id = excluded.account_id, payment_id = excluded.payment_id, refund_id = excluded.refund_id,
	provider_id = excluded.provider_id, detail = excluded.detail,
	found_at = CASE WHEN reconciliation_mismatches.resolved_at IS NULL THEN reconciliation_mismatches.found_at ELSE excluded.found_at END,
	resolved_at = NULL`)
	st.resolveMismatch = d.sql(`
UPDATE reconciliation_mismatches SET resolved_at = {{now}}
WHERE kind = $1 AND provider_key = $2 AND resolved_at IS NULL`)
	st.openMismatches = d.sql(`
SELECT ` + mismatchColumns + `
FROM reconciliation_mismatches WHERE resolved_at IS NULL ORDER BY found_at, id`)
	st.openMismatchesOf = d.sql(`
SELECT ` + mismatchColumns + `
FROM reconciliation_mismatches WHERE resolved_at IS NULL AND account_id = $1 ORDER BY found_at, id`)
	st.mismatchByID = d.sql(`SELECT ` + mismatchColumns + ` FROM reconciliation_mismatches WHERE id = $1`)
	st.insertRun = d.sql(`
INSERT INTO reconciliation_runs (id, started_at, finished_at, window_from, window_to, provider_charges, provider_refunds, matched, fixed, mismatches)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`)
	st.lastRun = d.sql(`
SELECT id, started_at, finished_at, window_from, window_to, provider_charges, provider_refunds, matched, fixed, mismatches
FROM reconciliation_runs ORDER BY finished_at DESC, id LIMIT 1`)
}

// correctionSQL sets the statements of an operator's corrections.
func (st *statements) correctionSQL(d dialect) {
	// An operator's correction of $1, if it is still in state $2: to $3,
	// with $4 provider id and $5, $6 failure; a hold is lifted and the
	// fence bumped, so a worker still calling the provider is refused.
	// A succeeded payment is corrected only while it has no refund:
	// one accepted after Correct looked is caught here.
	st.correctPayment = correctSQL(d, "payments", "provider_charge_id", " AND (state <> 'succeeded' OR amount_refunded = 0)")
	st.correctRefund = correctSQL(d, "refunds", "provider_refund_id", "")
	st.adjustRefunded = d.sql(`
UPDATE payments SET amount_refunded = amount_refunded + $2, updated_at = {{now}}
WHERE id = $1 AND amount_refunded + $2 >= 0 AND amount_refunded + $2 <= amount
RETURNING id`)
	st.postedTxn = d.sql(`SELECT count(*) FROM ledger_transactions WHERE kind = $1 AND ref = $2`)
}
