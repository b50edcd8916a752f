package chaos

import (
	"fmt"

	"github.com/idemhq/idem/payd/internal/provider"
)

// Mismatch kinds an injected fault explains: provider-other-amount makes
// the provider charge or refund another amount than payd asked, and payd
// holds the payment or refund with one of these open.
const (
	mismatchAmount       = "amount_mismatch"
	mismatchRefundAmount = "refund_amount_mismatch"
)

// explained is what the oracles make of payd's held payments and refunds
// and its open mismatches. A hold is explained when an open mismatch of
// the amount kind names it, the provider's object under its key is for
// another amount than payd's, and the simulator made objects for another
// amount in this run. The other oracles excuse explained holds; anything
// else held or open is a problem.
type explained struct {
	payments   map[string]bool // held payments explained, by id
	refunds    map[string]bool // held refunds explained, by id
	refundKeys map[string]bool // the provider keys of those refunds
	items      []HeldItem
	mismatches int      // open mismatches explained
	problems   []string // held payments, held refunds and open mismatches nothing injected explains
}

// ids are the explained held payments and refunds, by id.
func (x *explained) ids() map[string]bool {
	out := map[string]bool{}
	for id := range x.payments {
		out[id] = true
	}
	for id := range x.refunds {
		out[id] = true
	}
	return out
}

// explain judges payd's holds and open mismatches. Without payd's tables,
// or a schema that has no holds, nothing is held and nothing is explained.
func (ev *evidence) explain() *explained {
	if ev.held != nil {
		return ev.held
	}
	x := &explained{payments: map[string]bool{}, refunds: map[string]bool{}, refundKeys: map[string]bool{}}
	ev.held = x
	st := ev.store
	if st == nil {
		return x
	}
	idx := ev.index()
	paymentMismatch, refundMismatch, strays := idx.mismatchesOf(st.mismatches)
	for _, p := range ev.payments {
		if p.Hold == "" {
			continue
		}
		c, ok := idx.chargeByKey[p.ProviderKey]
		m := paymentMismatch[p.ID]
		if w := ev.unexplained(m, ok, p.Amount, c.Amount, "charge"); w != "" {
			x.problems = append(x.problems, fmt.Sprintf("payment %s (%s) is held (%s): %s", p.ID, p.Reference, p.Hold, w))
			continue
		}
		x.payments[p.ID] = true
		x.mismatches++
		x.items = append(x.items, HeldItem{Subject: "payment", ID: p.ID, ProviderKey: p.ProviderKey, Amount: p.Amount, ProviderAmount: c.Amount, Hold: p.Hold, Mismatch: m})
	}
	for _, r := range st.refunds {
		if r.Hold == "" {
			continue
		}
		pr, ok := idx.refundByKey[r.ProviderKey]
		m := refundMismatch[r.ID]
		if w := ev.unexplained(m, ok, r.Amount, pr.Amount, "refund"); w != "" {
			x.problems = append(x.problems, fmt.Sprintf("refund %s (payment %s) is held (%s): %s", r.ID, r.PaymentID, r.Hold, w))
			continue
		}
		x.refunds[r.ID], x.refundKeys[r.ProviderKey] = true, true
		x.mismatches++
		x.items = append(x.items, HeldItem{Subject: "refund", ID: r.ID, ProviderKey: r.ProviderKey, Amount: r.Amount, ProviderAmount: pr.Amount, Hold: r.Hold, Mismatch: m})
	}
	x.problems = append(x.problems, strays...)
	return x
}

// holdIndex finds the provider's objects and payd's rows that holds and
// mismatches name.
type holdIndex struct {
	chargeByKey    map[string]provider.Charge
	refundByKey    map[string]provider.Refund
	payments       map[string]*paymentRow // by id
	paymentByKey   map[string]*paymentRow
	refunds        map[string]*refundRow // by id
	refundRowByKey map[string]*refundRow
}

// index indexes ev, whose store is not nil.
func (ev *evidence) index() *holdIndex {
	idx := &holdIndex{chargeByKey: map[string]provider.Charge{}, refundByKey: map[string]provider.Refund{},
		payments: map[string]*paymentRow{}, paymentByKey: map[string]*paymentRow{},
		refunds: map[string]*refundRow{}, refundRowByKey: map[string]*refundRow{}}
	for _, c := range ev.charges {
		idx.chargeByKey[c.IdempotencyKey] = c
	}
	for _, r := range ev.refunds {
		idx.refundByKey[r.IdempotencyKey] = r
	}
	for i := range ev.payments {
		p := &ev.payments[i]
		idx.payments[p.ID], idx.paymentByKey[p.ProviderKey] = p, p
	}
	for i := range ev.store.refunds {
		r := &ev.store.refunds[i]
		idx.refunds[r.ID], idx.refundRowByKey[r.ProviderKey] = r, r
	}
	return idx
}

// mismatchesOf finds the open mismatch of the amount kind that names each
// held payment and refund, by id, and says of each other open mismatch
// why no held subject accounts for it.
func (idx *holdIndex) mismatchesOf(open []mismatchRow) (paymentMismatch, refundMismatch map[string]string, strays []string) {
	paymentMismatch, refundMismatch = map[string]string{}, map[string]string{}
	for _, m := range open {
		switch m.Kind {
		case mismatchAmount:
			p := idx.payments[m.PaymentID]
			if p == nil {
				p = idx.paymentByKey[m.ProviderKey]
			}
			switch {
			case p == nil:
				strays = append(strays, fmt.Sprintf("open %s %s names no payment (%q, key %q): %s", m.Kind, m.ID, m.PaymentID, m.ProviderKey, m.Detail))
			case p.Hold == "":
				strays = append(strays, fmt.Sprintf("open %s %s: payment %s is not held (it is %s): %s", m.Kind, m.ID, p.ID, p.State, m.Detail))
			default:
				paymentMismatch[p.ID] = m.ID
			}
		case mismatchRefundAmount:
			r := idx.refunds[m.RefundID]
			if r == nil {
				r = idx.refundRowByKey[m.ProviderKey]
			}
			switch {
			case r == nil:
				strays = append(strays, fmt.Sprintf("open %s %s names no refund (%q, key %q): %s", m.Kind, m.ID, m.RefundID, m.ProviderKey, m.Detail))
			case r.Hold == "":
				strays = append(strays, fmt.Sprintf("open %s %s: refund %s is not held (it is %s): %s", m.Kind, m.ID, r.ID, r.State, m.Detail))
			default:
				refundMismatch[r.ID] = m.ID
			}
		default:
			strays = append(strays, fmt.Sprintf("open %s %s (key %q, payment %q, refund %q): %s", m.Kind, m.ID, m.ProviderKey, m.PaymentID, m.RefundID, m.Detail))
		}
	}
	return paymentMismatch, refundMismatch, strays
}

// unexplained says what leaves a held subject unexplained, or "" when
// nothing does: the provider's object under its key (found, for
// providerAmount) and the open mismatch that names the subject ("" for
// none).
func (ev *evidence) unexplained(mismatch string, found bool, amount, providerAmount int64, object string) string {
	switch {
	case !found:
		return fmt.Sprintf("the provider has no %s under its key", object)
	case providerAmount == amount:
		return fmt.Sprintf("the provider's %s under its key is for the same amount, %d", object, amount)
	case ev.otherAmounts == 0:
		return fmt.Sprintf("the provider's %s is for %d, not %d, but the simulator made nothing for another amount: provider-other-amount does not explain it", object, providerAmount, amount)
	case mismatch == "":
		return "no open " + map[string]string{"charge": mismatchAmount, "refund": mismatchRefundAmount}[object] + " names it"
	}
	return ""
}

// holdsExplained: every payment and refund payd holds after the drain,
// and every mismatch it has open, is explained by a fault the harness
// injected (see explain). A hold nothing explains is money payd stopped
// moving for no reason the run gave it; an open mismatch nothing explains
// is one payd found in its own bookkeeping.
func (ev *evidence) holdsExplained(tr *TargetReport) Check {
	c := Check{Name: "holds and mismatches are explained"}
	if ev.store == nil || !ev.store.holds {
		c.Status, c.Detail = Skipped, "this payd has no holds"
		if ev.store != nil {
			c.Detail = ev.store.noHolds
		}
		return c
	}
	x := ev.explain()
	c.Status = Pass
	c.Detail = fmt.Sprintf("%s payments and %s refunds held, each with its open amount mismatch, for %s objects the provider made for another amount; no other mismatch open",
		itoa(tr.HeldPayments), itoa(tr.HeldRefunds), itoa(int(ev.otherAmounts)))
	if len(x.items) == 0 {
		c.Detail = "nothing held and no mismatch open"
	}
	if len(x.problems) > 0 {
		c.Status = Fail
		c.Detail = fmt.Sprintf("%s held payments or refunds and open mismatches no injected fault explains (%s explained)", itoa(len(x.problems)), itoa(len(x.items)))
		c.Examples = examples(x.problems)
	}
	return c
}
