package payments

import (
	"context"
	"fmt"
	"io"
	"iter"
	"strings"
	"time"

	"github.com/idemhq/idem/payd/internal/provider"
)

// ProviderRecords is what Verify reads from the provider: every charge and
// refund it made.
type ProviderRecords interface {
	Charges(ctx context.Context, from, to time.Time) iter.Seq2[provider.Charge, error]
	Refunds(ctx context.Context, from, to time.Time) iter.Seq2[provider.Refund, error]
}

// Check is one invariant and what breaks it.
type Check struct {
	Name string
	// Violations describes the first maxShown violations; Count is how many
	// there are.
	Violations []string
	Count      int
}

// maxShown caps the violations a Check lists.
const maxShown = 20

func (c *Check) add(format string, args ...any) {
	c.Count++
	if len(c.Violations) < maxShown {
		c.Violations = append(c.Violations, fmt.Sprintf(format, args...))
	}
}

// Report is what Verify found: every check, passed or not, and notes
// that are not violations (open mismatches, which payd shows already).
type Report struct {
	Checks []*Check
	Notes  []string
}

// OK reports whether every check passed.
func (r *Report) OK() bool {
	for _, c := range r.Checks {
		if c.Count > 0 {
			return false
		}
	}
	return true
}

// Print writes the report for people: a line per check, and what breaks
// each that failed.
func (r *Report) Print(w io.Writer) {
	failed := 0
	for _, c := range r.Checks {
		if c.Count == 0 {
			fmt.Fprintf(w, "ok    %s\n", c.Name)
			continue
		}
		failed++
		fmt.Fprintf(w, "FAIL  %s: %d violation(s)\n", c.Name, c.Count)
		for _, v := range c.Violations {
			fmt.Fprintf(w, "        %s\n", v)
		}
		if c.Count > len(c.Violations) {
			fmt.Fprintf(w, "        … and %d more\n", c.Count-len(c.Violations))
		}
	}
	if len(r.Notes) > 0 {
		fmt.Fprintf(w, "\n%d open mismatch(es), known to payd and shown at GET /v1/reconciliation:\n", len(r.Notes))
		for i, n := range r.Notes {
			if i == maxShown {
				fmt.Fprintf(w, "        … and %d more\n", len(r.Notes)-maxShown)
				break
			}
			fmt.Fprintf(w, "        %s\n", n)
		}
	}
	if failed == 0 {
		fmt.Fprintf(w, "\nall %d checks passed\n", len(r.Checks))
	} else {
		fmt.Fprintf(w, "\n%d of %d checks FAILED\n", failed, len(r.Checks))
	}
}

// sqlCheck is an invariant checked by queries that return one line of
// text per violation.
type sqlCheck struct {
	name    string
	queries []string
}

// ledgerChecks are the invariants the database alone can check. Each query
// describes its violations in words.
var ledgerChecks = []sqlCheck{
	{"postings sum to zero in every journal transaction", []string{`
SELECT 'journal transaction ' || txn_id || ' sums to ' || CAST(sum(amount) AS text) || ' ' || currency
FROM ledger_entries GROUP BY txn_id, currency HAVING sum(amount) <> 0`, `
SELECT 'journal transaction ' || t.kind || ' ' || t.ref || ' has ' || CAST(count(e.txn_id) AS text) || ' posting(s)'
FROM ledger_transactions t LEFT JOIN ledger_entries e ON e.txn_id = t.id
GROUP BY t.id, t.kind, t.ref HAVING count(e.txn_id) < 2`}},
	{"postings sum to zero overall", []string{`
SELECT 'all postings in ' || currency || ' sum to ' || CAST(sum(amount) AS text)
FROM ledger_entries GROUP BY currency HAVING sum(amount) <> 0`}},
	{"every balance equals the sum of its postings", []string{`
SELECT 'balance of ' || b.account || ' is ' || CAST(b.balance AS text) || ' ' || b.currency || '; its postings sum to ' || CAST(coalesce(e.total, 0) AS text)
FROM (SELECT account, currency, sum(balance) AS balance FROM ledger_balances GROUP BY account, currency) b
LEFT JOIN (SELECT account, currency, sum(amount) AS total FROM ledger_entries GROUP BY account, currency) e
	ON e.account = b.account AND e.currency = b.currency
WHERE b.balance <> coalesce(e.total, 0)`, `
SELECT 'postings to ' || e.account || ' sum to ' || CAST(e.total AS text) || ' ' || e.currency || ' and it has no balance'
FROM (SELECT account, currency, sum(amount) AS total FROM ledger_entries GROUP BY account, currency) e
LEFT JOIN ledger_balances b ON b.account = e.account AND b.currency = e.currency
WHERE b.account IS NULL AND e.total <> 0`}},
	{"every payment's and refund's postings net to what its state says", []string{
		netsQuery("payment", "payments", []string{txnCharge, txnChargeReversal}, [][2]string{
			{"provider_clearing", "CASE WHEN x.state = 'succeeded' THEN x.amount ELSE 0 END"},
			{"merchant", "CASE WHEN x.state = 'succeeded' THEN -x.amount ELSE 0 END"},
		}),
		netsQuery("refund", "refunds", []string{txnRefundReserve, txnRefund, txnRefundReversal, txnRefundCorrection, txnRefundCorrectionReversal}, [][2]string{
			{"provider_clearing", "CASE WHEN x.state = 'succeeded' THEN -x.amount ELSE 0 END"},
			{"refunds_payable", "CASE WHEN x.state IN ('succeeded', 'failed') THEN 0 ELSE -x.amount END"},
			{"merchant", "CASE WHEN x.state = 'failed' THEN 0 ELSE x.amount END"},
		}), `
SELECT t.kind || ' journal transaction for ' || t.ref || ', which is not a payment'
FROM ledger_transactions t LEFT JOIN payments p ON p.id = t.ref
WHERE t.kind IN ('charge', 'charge_reversal') AND p.id IS NULL`, `
SELECT t.kind || ' journal transaction for ' || t.ref || ', which is not a refund'
FROM ledger_transactions t LEFT JOIN refunds r ON r.id = t.ref
WHERE t.kind IN ('refund_reserve', 'refund', 'refund_reversal', 'refund_correction', 'refund_correction_reversal') AND r.id IS NULL`}},
	{"every held payment and refund has its open mismatch", []string{`
SELECT 'payment ' || p.id || ' is held (' || p.hold || ') with no open mismatch about its key'
FROM payments p WHERE p.hold IS NOT NULL AND NOT EXISTS (
	SELECT 1 FROM reconciliation_mismatches m WHERE m.provider_key = p.provider_key AND m.kind = p.hold AND m.resolved_at IS NULL)`, `
SELECT 'refund ' || r.id || ' is held (' || r.hold || ') with no open mismatch about its key'
FROM refunds r WHERE r.hold IS NOT NULL AND NOT EXISTS (
	SELECT 1 FROM reconciliation_mismatches m WHERE m.provider_key = r.provider_key AND m.kind = r.hold AND m.resolved_at IS NULL)`}},
	{"refunded ≤ captured per charge", []string{`
SELECT 'payment ' || id || ' has ' || CAST(amount_refunded AS text) || ' refunded of ' || CAST(amount AS text)
FROM payments WHERE amount_refunded > amount`, `
SELECT 'payment ' || p.id || ' shows ' || CAST(p.amount_refunded AS text) || ' refunded; its refunds not failed sum to ' || CAST(coalesce(r.total, 0) AS text)
FROM payments p
LEFT JOIN (SELECT payment_id, sum(amount) AS total FROM refunds WHERE state <> 'failed' GROUP BY payment_id) r ON r.payment_id = p.id
WHERE p.amount_refunded <> coalesce(r.total, 0)`}},
}

// netsQuery is a query of the payments or refunds (table) whose postings
// of the journal transaction kinds, summed per account, are not what
// their states say: want maps each account (provider_clearing, or the
// subject's own merchant or refunds_payable account) to an SQL
// expression of the row x. A posting to any other account, or in another
// currency than the subject's, is a violation too.
func netsQuery(subject, table string, kinds []string, want [][2]string) string {
	account := func(a string) string {
		if a == "provider_clearing" {
			return "'provider_clearing'"
		}
		return "'" + a + ":' || q.account_id"
	}
	var sums, got, wants, differs, accounts []string
	for _, w := range want {
		col := strings.ReplaceAll(w[0], "_", "")
		sums = append(sums, fmt.Sprintf("sum(CASE WHEN e.account = %s THEN e.amount ELSE 0 END) AS %s", account(w[0]), col))
		got = append(got, fmt.Sprintf("CAST(coalesce(n.%s, 0) AS text) || ' to %s'", col, w[0]))
		wants = append(wants, fmt.Sprintf("CAST(%s AS text)", w[1]))
		differs = append(differs, fmt.Sprintf("coalesce(n.%s, 0) <> %s", col, w[1]))
		accounts = append(accounts, account(w[0]))
	}
	return `
SELECT '` + subject + ` ' || x.id || ' is ' || x.state || '; its postings move ' || ` + strings.Join(got, ` || ', ' || `) + ` ||
	'; want ' || ` + strings.Join(wants, ` || ', ' || `) + ` || (CASE WHEN coalesce(n.other, 0) > 0 THEN ', and nothing to other accounts or in another currency' ELSE '' END)
FROM ` + table + ` x LEFT JOIN (
	SELECT t.ref, ` + strings.Join(sums, ", ") + `,
		sum(CASE WHEN e.account NOT IN (` + strings.Join(accounts, ", ") + `) OR e.currency <> q.currency THEN 1 ELSE 0 END) AS other
	FROM ledger_transactions t JOIN ledger_entries e ON e.txn_id = t.id JOIN ` + table + ` q ON q.id = t.ref
	WHERE t.kind IN ('` + strings.Join(kinds, "', '") + `') GROUP BY t.ref) n ON n.ref = x.id
WHERE ` + strings.Join(differs, " OR ") + ` OR coalesce(n.other, 0) > 0`
}

// Verify checks payd's invariants against the database and the provider:
// the ledger balances, per transaction and overall; balances are the sums
// of their postings; every payment's and refund's postings net to what its
// state says (corrections included); refunds never exceed the charge;
// every hold has its open mismatch; the provider's charges and refunds and
// payd's succeeded ones match one to one by key, id, amount and currency,
// except where an open mismatch already says they do not; and nothing due
// has been left undone for more than stuckAfter. Open mismatches are
// listed in the report's notes: they are disagreements payd knows of and
// shows (GET /v1/reconciliation), not silent ones. It reads everything,
// so run it against a quiet system for a clean report: work in flight
// shows as a mismatch with the provider.
func (s *Store) Verify(ctx context.Context, prov ProviderRecords, stuckAfter time.Duration) (*Report, error) {
	r := &Report{}
	for _, sc := range ledgerChecks {
		c := &Check{Name: sc.name}
		for _, q := range sc.queries {
			if err := s.collect(ctx, c, q); err != nil {
				return nil, fmt.Errorf("payments: verify %q: %w", sc.name, err)
			}
		}
		r.Checks = append(r.Checks, c)
	}
	c := &Check{Name: "the ledger and audit log are append-only (triggers in force)"}
	if err := s.checkTriggers(ctx, c); err != nil {
		return nil, err
	}
	r.Checks = append(r.Checks, c)

	open, err := s.OpenMismatches(ctx)
	if err != nil {
		return nil, err
	}
	known := map[string]bool{} // keys an open mismatch is about
	for _, m := range open {
		known[m.ProviderKey] = true
		r.Notes = append(r.Notes, fmt.Sprintf("open mismatch %s (%s) about key %s: %s", m.ID, m.Kind, m.ProviderKey, m.Detail))
	}
	c = &Check{Name: "provider charges and succeeded payments match 1:1 by key, id, amount and currency, or an open mismatch says why not"}
	if err := s.checkCharges(ctx, c, prov, known); err != nil {
		return nil, err
	}
	r.Checks = append(r.Checks, c)
	c = &Check{Name: "provider refunds and succeeded refunds match 1:1 by key, id, charge and amount, or an open mismatch says why not"}
	if err := s.checkRefunds(ctx, c, prov, known); err != nil {
		return nil, err
	}
	r.Checks = append(r.Checks, c)

	c = &Check{Name: fmt.Sprintf("no payment or refund left undone for more than %s past due", stuckAfter)}
	for _, table := range []string{"payments", "refunds"} {
		q := `SELECT '` + table[:len(table)-1] + ` ' || id || ' is ' || state || ', due ' || CAST(({{now}} - next_attempt_at) / 1000 AS text) || 's ago'
FROM ` + table + ` WHERE state IN ('pending', 'processing', 'retry_scheduled', 'unknown') AND hold IS NULL AND next_attempt_at < {{now}} - $1`
		if err := s.collect(ctx, c, q, stuckAfter.Milliseconds()); err != nil {
			return nil, fmt.Errorf("payments: verify stuck %s: %w", table, err)
		}
	}
	r.Checks = append(r.Checks, c)
	return r, nil
}

// collect adds to c a violation for each line q returns.
func (s *Store) collect(ctx context.Context, c *Check, q string, args ...any) error {
	rs, err := s.db.Query(ctx, s.dialect.sql(q), args...)
	if err != nil {
		return err
	}
	defer rs.Close()
	for rs.Next() {
		var line string
		if err := rs.Scan(&line); err != nil {
			return err
		}
		c.add("%s", line)
	}
	return rs.Err()
}

// appendOnly are the triggers that refuse UPDATE and DELETE on posted
// rows, by dialect.
var appendOnly = map[string][]string{
	"postgres": {"ledger_transactions_append_only", "ledger_entries_append_only", "audit_log_append_only"},
	"sqlite": {"ledger_transactions_no_update", "ledger_transactions_no_delete", "ledger_entries_no_update",
		"ledger_entries_no_delete", "audit_log_no_update", "audit_log_no_delete"},
}

func (s *Store) checkTriggers(ctx context.Context, c *Check) error {
	q := `SELECT name FROM sqlite_master WHERE type = 'trigger'`
	if s.dialect.name == "postgres" {
		q = `SELECT tgname FROM pg_trigger WHERE tgenabled <> 'D' AND NOT tgisinternal`
	}
	rs, err := s.db.Query(ctx, q)
	if err != nil {
		return fmt.Errorf("payments: verify triggers: %w", err)
	}
	defer rs.Close()
	enabled := map[string]bool{}
	for rs.Next() {
		var name string
		if err := rs.Scan(&name); err != nil {
			return err
		}
		enabled[name] = true
	}
	if err := rs.Err(); err != nil {
		return err
	}
	for _, name := range appendOnly[s.dialect.name] {
		if !enabled[name] {
			c.add("trigger %s is missing or disabled: posted rows can be changed", name)
		}
	}
	return nil
}

// record is a payment or refund as the provider checks compare them.
type record struct {
	id, key, providerID, state, currency, chargeID string
	amount                                         int64
}

func (s *Store) records(ctx context.Context, q string) (map[string]record, error) {
	rs, err := s.db.Query(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	out := map[string]record{}
	for rs.Next() {
		var r record
		if err := rs.Scan(&r.id, &r.key, &r.providerID, &r.state, &r.amount, &r.currency, &r.chargeID); err != nil {
			return nil, err
		}
		out[r.key] = r
	}
	return out, rs.Err()
}

func (s *Store) checkCharges(ctx context.Context, c *Check, prov ProviderRecords, known map[string]bool) error {
	charges, err := provider.Collect(prov.Charges(ctx, time.Time{}, time.Time{}))
	if err != nil {
		return fmt.Errorf("payments: verify: list the provider's charges: %w", err)
	}
	ours, err := s.records(ctx, `SELECT id, provider_key, coalesce(provider_charge_id, ''), state, amount, currency, '' FROM payments`)
	if err != nil {
		return fmt.Errorf("payments: verify: read payments: %w", err)
	}
	succeeded := map[string]provider.Charge{}
	for _, ch := range charges {
		if ch.Status != provider.StatusSucceeded {
			continue
		}
		if prev, ok := succeeded[ch.IdempotencyKey]; ok { // whatever is open about the key
			c.add("the provider charged key %s twice: %s and %s", ch.IdempotencyKey, prev.ID, ch.ID)
		}
		succeeded[ch.IdempotencyKey] = ch
		if known[ch.IdempotencyKey] {
			continue
		}
		p, ok := ours[ch.IdempotencyKey]
		switch {
		case !ok:
			c.add("provider charge %s of %d %s (key %s) has no payment", ch.ID, ch.Amount, ch.Currency, ch.IdempotencyKey)
		case p.state != StateSucceeded:
			c.add("provider charge %s of %d %s succeeded; payment %s is %s", ch.ID, ch.Amount, ch.Currency, p.id, p.state)
		case p.providerID != ch.ID || p.amount != ch.Amount || p.currency != ch.Currency:
			c.add("payment %s is %s %d %s; the provider's charge under its key is %s %d %s",
				p.id, p.providerID, p.amount, p.currency, ch.ID, ch.Amount, ch.Currency)
		}
	}
	for key, p := range ours {
		if _, ok := succeeded[key]; !ok && p.state == StateSucceeded && !known[key] {
			c.add("payment %s succeeded; the provider has no succeeded charge under key %s", p.id, key)
		}
	}
	return nil
}

func (s *Store) checkRefunds(ctx context.Context, c *Check, prov ProviderRecords, known map[string]bool) error {
	refunds, err := provider.Collect(prov.Refunds(ctx, time.Time{}, time.Time{}))
	if err != nil {
		return fmt.Errorf("payments: verify: list the provider's refunds: %w", err)
	}
	ours, err := s.records(ctx, `SELECT id, provider_key, coalesce(provider_refund_id, ''), state, amount, currency, charge_id FROM refunds`)
	if err != nil {
		return fmt.Errorf("payments: verify: read refunds: %w", err)
	}
	seen := map[string]bool{}
	for _, pr := range refunds {
		if pr.Status != provider.StatusSucceeded {
			continue
		}
		if seen[pr.IdempotencyKey] { // whatever is open about the key
			c.add("the provider refunded key %s twice", pr.IdempotencyKey)
		}
		seen[pr.IdempotencyKey] = true
		if known[pr.IdempotencyKey] {
			continue
		}
		r, ok := ours[pr.IdempotencyKey]
		switch {
		case !ok:
			c.add("provider refund %s of %d on %s (key %s) has no refund", pr.ID, pr.Amount, pr.ChargeID, pr.IdempotencyKey)
		case r.state != StateSucceeded:
			c.add("provider refund %s of %d succeeded; refund %s is %s", pr.ID, pr.Amount, r.id, r.state)
		case r.providerID != pr.ID || r.amount != pr.Amount || r.chargeID != pr.ChargeID:
			c.add("refund %s is %s %d on %s; the provider's refund under its key is %s %d on %s",
				r.id, r.providerID, r.amount, r.chargeID, pr.ID, pr.Amount, pr.ChargeID)
		}
	}
	for key, r := range ours {
		if !seen[key] && r.state == StateSucceeded && !known[key] {
			c.add("refund %s succeeded; the provider has no refund under key %s", r.id, key)
		}
	}
	return nil
}
