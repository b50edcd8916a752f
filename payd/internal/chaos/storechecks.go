package chaos

import (
	"fmt"

	"github.com/idemhq/idem/payd/internal/provider"
)

// storeEvidence is what the oracles read from payd's own tables beyond
// payments. A table or column this payd does not have makes the checks
// that need it skipped, never passed.
type storeEvidence struct {
	hasRefunds bool
	refunds    []refundRow
	ledger     *ledgerEvidence // nil without a ledger
	holds      bool            // the schema has holds and the mismatches they open
	noHolds    string          // why not, when it has not
	mismatches []mismatchRow   // the open ones
}

type txnKey struct{ kind, ref string }

type balanceKey struct{ account, currency string }

// ledgerEvidence is payd's ledger as the oracles read it.
type ledgerEvidence struct {
	txns       map[txnKey]int       // journal transactions per kind and ref
	available  map[balanceKey]int64 // what each merchant is owed: −Σ ledger_balances of merchant:<account>
	unbalanced []string             // every transaction, and every currency, whose entries do not sum to zero
	count      int                  // journal transactions
}

// Ledger transaction kinds the oracles count.
const (
	txnCharge = "charge"
	txnRefund = "refund"
)

// storeChecks are the oracles read from payd's own tables beyond
// payments: the ledger, refunds and holds.
func (ev *evidence) storeChecks(tr *TargetReport) []Check {
	return []Check{
		ev.chargeTransactions(),
		ev.ledgerSumsToZero(),
		ev.noRefundStuck(),
		ev.refundsOneToOne(),
		ev.balancesMatch(),
		ev.holdsExplained(tr),
	}
}

const noLedger = "this payd has no ledger (no ledger_transactions table)"

// chargeTransactions: exactly one charge transaction per succeeded
// provider charge, none for any other payment. A payment held with its
// hold explained has not been posted, and its provider charge is excused.
func (ev *evidence) chargeTransactions() Check {
	c := Check{Name: "one ledger transaction per provider charge"}
	l := ev.store.ledger
	if l == nil {
		c.Status, c.Detail = Skipped, noLedger
		return c
	}
	x := ev.explain()
	var ex []string
	charged := map[string]bool{}
	n, held := 0, 0
	for _, ch := range ev.charges {
		if ch.Status != provider.StatusSucceeded {
			continue
		}
		pid := ch.Metadata["payment_id"]
		charged[pid] = true
		if x.payments[pid] {
			held++
			continue
		}
		n++
		if got := l.txns[txnKey{txnCharge, pid}]; got != 1 {
			ex = append(ex, fmt.Sprintf("%s (payment %s): %d charge transactions", ch.ID, pid, got))
		}
	}
	for k := range l.txns {
		if k.kind == txnCharge && !charged[k.ref] {
			ex = append(ex, fmt.Sprintf("payment %s has a charge transaction and no provider charge", k.ref))
		}
	}
	c.Status, c.Detail = Pass, fmt.Sprintf("each of %s succeeded provider charges has exactly one, and no other payment has one", itoa(n))
	if held > 0 {
		c.Detail += fmt.Sprintf(" (%s more belong to held payments, not posted)", itoa(held))
	}
	if len(ex) > 0 {
		c.Status, c.Detail, c.Examples = Fail, fmt.Sprintf("%s charges or payments without exactly one charge transaction", itoa(len(ex))), examples(ex)
	}
	return c
}

// ledgerSumsToZero: every journal transaction's entries, and all entries
// per currency, sum to zero.
func (ev *evidence) ledgerSumsToZero() Check {
	c := Check{Name: "the ledger sums to zero"}
	l := ev.store.ledger
	if l == nil {
		c.Status, c.Detail = Skipped, noLedger
		return c
	}
	c.Status, c.Detail = Pass, fmt.Sprintf("%s journal transactions, each summing to zero, as do all entries per currency", itoa(l.count))
	if len(l.unbalanced) > 0 {
		c.Status, c.Detail, c.Examples = Fail, fmt.Sprintf("%d sums that are not zero", len(l.unbalanced)), examples(l.unbalanced)
	}
	return c
}

// noRefundStuck: after the drain every refund is succeeded or failed, or
// held with its hold explained.
func (ev *evidence) noRefundStuck() Check {
	c := Check{Name: "no refund stuck"}
	if !ev.store.hasRefunds {
		c.Status, c.Detail = Skipped, "this payd has no refunds table"
		return c
	}
	x := ev.explain()
	var ex []string
	for _, r := range ev.store.refunds {
		if !isFinal(r.State) && !x.refunds[r.ID] {
			ex = append(ex, fmt.Sprintf("refund %s is %s", r.ID, r.State))
		}
	}
	c.Status, c.Detail = Pass, "every refund is succeeded or failed"
	if n := len(x.refunds); n > 0 {
		c.Detail += fmt.Sprintf(", but %s held for their amount", itoa(n))
	}
	if len(ex) > 0 {
		c.Status, c.Detail, c.Examples = Fail, fmt.Sprintf("%d refunds are not final after the drain", len(ex)), examples(ex)
	}
	return c
}

// refundsOneToOne: every succeeded provider refund is, by its idempotency
// key, one payd refund that succeeded with that provider refund and its
// amount, posted once; no payd refund failed while the provider refunded
// under its key; every succeeded payd refund has its succeeded provider
// refund. A refund held with its hold explained is excused.
func (ev *evidence) refundsOneToOne() Check {
	c := Check{Name: "refunds map one to one"}
	if !ev.store.hasRefunds {
		c.Status, c.Detail = Skipped, "this payd has no refunds table"
		return c
	}
	x := ev.explain()
	l := ev.store.ledger
	byKey := map[string]*refundRow{}
	byID := map[string]*refundRow{}
	for i := range ev.store.refunds {
		r := &ev.store.refunds[i]
		byKey[r.ProviderKey], byID[r.ID] = r, r
	}
	var ex []string
	paid := map[string]string{} // provider key → the provider refund that succeeded under it
	n, held := 0, 0
	for _, pr := range ev.refunds {
		if pr.Status != provider.StatusSucceeded {
			continue
		}
		if other, dup := paid[pr.IdempotencyKey]; dup {
			ex = append(ex, fmt.Sprintf("the provider refunded twice under key %s: %s and %s", pr.IdempotencyKey, other, pr.ID))
		}
		paid[pr.IdempotencyKey] = pr.ID
		r := byKey[pr.IdempotencyKey]
		if r != nil && x.refunds[r.ID] {
			held++
			continue
		}
		n++
		what := fmt.Sprintf("provider refund %s (%d of charge %s)", pr.ID, pr.Amount, pr.ChargeID)
		switch {
		case r == nil:
			ex = append(ex, fmt.Sprintf("%s: no payd refund has its key %s", what, pr.IdempotencyKey))
		case r.State == "failed":
			ex = append(ex, fmt.Sprintf("%s: payd refund %s failed, though the provider refunded under its key", what, r.ID))
		case r.State != "succeeded":
			ex = append(ex, fmt.Sprintf("%s: payd refund %s is %s", what, r.ID, r.State))
		case r.ProviderRefundID != pr.ID:
			ex = append(ex, fmt.Sprintf("%s: payd refund %s records provider refund %q", what, r.ID, r.ProviderRefundID))
		case r.Amount != pr.Amount:
			ex = append(ex, fmt.Sprintf("%s: payd refund %s is for %d", what, r.ID, r.Amount))
		case l != nil && l.txns[txnKey{txnRefund, r.ID}] != 1:
			ex = append(ex, fmt.Sprintf("%s: payd refund %s has %d refund transactions", what, r.ID, l.txns[txnKey{txnRefund, r.ID}]))
		}
	}
	succeeded := 0
	for _, r := range ev.store.refunds {
		if r.State != "succeeded" {
			continue
		}
		succeeded++
		if paid[r.ProviderKey] == "" {
			ex = append(ex, fmt.Sprintf("payd refund %s (%d, payment %s) succeeded; the provider has no succeeded refund under its key %s", r.ID, r.Amount, r.PaymentID, r.ProviderKey))
		}
	}
	if l != nil {
		for k := range l.txns {
			if k.kind != txnRefund {
				continue
			}
			if r := byID[k.ref]; r == nil || r.State != "succeeded" {
				state := "not a payd refund"
				if r != nil {
					state = r.State
				}
				ex = append(ex, fmt.Sprintf("a refund transaction for %s, which is %s", k.ref, state))
			}
		}
	}
	c.Status, c.Detail = Pass, fmt.Sprintf("each of %s succeeded provider refunds is one succeeded payd refund, posted once, and each of %s succeeded payd refunds has its provider refund", itoa(n), itoa(succeeded))
	if held > 0 {
		c.Detail += fmt.Sprintf(" (%s more belong to held refunds)", itoa(held))
	}
	if len(ex) > 0 {
		c.Status, c.Detail, c.Examples = Fail, fmt.Sprintf("%s refunds that do not map one to one between the provider and payd", itoa(len(ex))), examples(ex)
	}
	return c
}

// balancesMatch: per merchant and currency, what the ledger says payd owes
// the merchant equals what the provider charged for its payments less
// what it refunded of them, with held objects set apart: a held payment's
// charge is not the merchant's yet, and a held refund's amount is reserved
// from the merchant (payd's amount) whatever the provider refunded. The
// provider's figures are its own amounts, so a charge or refund payd
// recorded for another amount than the provider's shows here.
func (ev *evidence) balancesMatch() Check {
	c := Check{Name: "balances match the provider"}
	l := ev.store.ledger
	if l == nil {
		c.Status, c.Detail = Skipped, noLedger
		return c
	}
	payments := map[string]*paymentRow{}
	byKey := map[string]*paymentRow{}
	byCharge := map[string]*paymentRow{}
	for i := range ev.payments {
		p := &ev.payments[i]
		payments[p.ID], byKey[p.ProviderKey] = p, p
		if p.ProviderChargeID != "" {
			byCharge[p.ProviderChargeID] = p
		}
	}
	refunds := map[string]*refundRow{}
	refundByKey := map[string]*refundRow{}
	for i := range ev.store.refunds {
		r := &ev.store.refunds[i]
		refunds[r.ID], refundByKey[r.ProviderKey] = r, r
	}
	currency := map[string]string{} // provider charge id → currency
	want := map[balanceKey]int64{}
	var ex []string
	for _, ch := range ev.charges {
		currency[ch.ID] = ch.Currency
		if ch.Status != provider.StatusSucceeded {
			continue
		}
		p := payments[ch.Metadata["payment_id"]]
		if p == nil {
			p = byKey[ch.IdempotencyKey]
		}
		switch {
		case p == nil:
			ex = append(ex, fmt.Sprintf("provider charge %s (%d %s) is for no payment: it is in no merchant's balance", ch.ID, ch.Amount, ch.Currency))
		case p.Hold == "":
			want[balanceKey{p.AccountID, ch.Currency}] += ch.Amount
		}
	}
	for _, pr := range ev.refunds {
		if pr.Status != provider.StatusSucceeded {
			continue
		}
		r := refunds[pr.Metadata["refund_id"]]
		if r == nil {
			r = refundByKey[pr.IdempotencyKey]
		}
		switch {
		case r != nil && r.Hold != "":
			// Its amount is reserved below, whatever the provider refunded.
		case r != nil:
			want[balanceKey{r.AccountID, r.Currency}] -= pr.Amount
		case byCharge[pr.ChargeID] != nil:
			// A refund payd does not know, of a payment it does: the
			// merchant's money all the same.
			p := byCharge[pr.ChargeID]
			want[balanceKey{p.AccountID, cmpOr(currency[pr.ChargeID], p.Currency)}] -= pr.Amount
		default:
			ex = append(ex, fmt.Sprintf("provider refund %s (%d of charge %s) is of no payment: it is in no merchant's balance", pr.ID, pr.Amount, pr.ChargeID))
		}
	}
	for _, r := range ev.store.refunds {
		if r.Hold != "" {
			want[balanceKey{r.AccountID, r.Currency}] -= r.Amount
		}
	}
	keys := map[balanceKey]bool{}
	for k := range want {
		keys[k] = true
	}
	for k := range l.available {
		keys[k] = true
	}
	for k := range keys {
		if got, w := l.available[k], want[k]; got != w {
			ex = append(ex, fmt.Sprintf("merchant %s, %s: the ledger says %d available, the provider's charges less refunds %d (off by %d)", k.account, k.currency, got, w, got-w))
		}
	}
	c.Status, c.Detail = Pass, fmt.Sprintf("each of %s merchant balances equals what the provider charged less what it refunded, held refunds reserved", itoa(len(keys)))
	if len(ex) > 0 {
		c.Status, c.Detail, c.Examples = Fail, fmt.Sprintf("%s balances or provider objects that disagree", itoa(len(ex))), examples(ex)
	}
	return c
}
