package chaos

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/idemhq/idem/payd/internal/provider"
)

// evidence is what the oracles judge one target by: the provider's
// charges and refunds, the target's payments, and what its clients were
// told; for payd, also its own tables.
type evidence struct {
	charges  []provider.Charge
	refunds  []provider.Refund
	payments []paymentRow
	records  []*record
	refunded bool // the workload refunded, so refunds are checked

	store        *storeEvidence // payd's tables beyond payments; nil for the naive processor
	otherAmounts int64          // charges and refunds the simulator made for another amount (its other_amounts)

	held *explained // explain's verdict, once made
}

const maxExamples = 5

// judge fills tr's figures and checks from ev.
func (ev *evidence) judge(tr *TargetReport) {
	byID := map[string]*paymentRow{}
	for i := range ev.payments {
		byID[ev.payments[i].ID] = &ev.payments[i]
	}
	var money []provider.Charge
	for _, c := range ev.charges {
		if c.Status == provider.StatusSucceeded {
			money = append(money, c)
		}
	}
	tr.Payments, tr.ProviderCharges, tr.MoneyCharges = len(ev.payments), len(ev.charges), len(money)
	x := ev.explain()
	tr.Held = x.items
	tr.HeldPayments, tr.HeldRefunds, tr.MismatchesExplained = len(x.payments), len(x.refunds), x.mismatches

	tr.Checks = append(tr.Checks,
		ev.noDoubleCharge(tr, money, byID),
		ev.noLostCharge(tr, money, byID),
		ev.noPhantomSuccess(money),
		ev.answersMatch(tr, byID),
		ev.noneStuck(tr),
	)
	if ev.refunded {
		tr.Checks = append(tr.Checks, ev.refundsMatch())
	}
	ev.clientStats(tr)
}

// noDoubleCharge: at most one succeeded provider charge per payment key.
// A charge's key is the reference its client sent (payd and the naive
// processor both pass it to the provider in the charge's metadata), so two
// payments made for one client key count too.
func (ev *evidence) noDoubleCharge(tr *TargetReport, money []provider.Charge, byID map[string]*paymentRow) Check {
	byRef := map[string][]string{}
	for _, c := range money {
		ref := c.Metadata["reference"]
		if ref == "" {
			if p := byID[c.Metadata["payment_id"]]; p != nil {
				ref = p.Reference
			} else {
				ref = "provider key " + c.IdempotencyKey
			}
		}
		byRef[ref] = append(byRef[ref], c.ID)
	}
	var ex []string
	for ref, ids := range byRef {
		if len(ids) > 1 {
			tr.DoubleCharges += len(ids) - 1
			ex = append(ex, fmt.Sprintf("%s charged %d times: %s", ref, len(ids), strings.Join(ids, ", ")))
		}
	}
	c := Check{Name: "no double charge", Status: Pass,
		Detail: fmt.Sprintf("%s payment keys charged, none more than once", itoa(len(byRef)))}
	if tr.DoubleCharges > 0 {
		c.Status = Fail
		c.Detail = fmt.Sprintf("%s extra provider charges over %s payment keys", itoa(tr.DoubleCharges), itoa(len(ex)))
		c.Examples = examples(ex)
	}
	return c
}

// noLostCharge: every succeeded provider charge is recorded by exactly one
// payment, which succeeded with that charge.
func (ev *evidence) noLostCharge(tr *TargetReport, money []provider.Charge, byID map[string]*paymentRow) Check {
	claims := map[string][]string{}
	for _, p := range ev.payments {
		if p.ProviderChargeID != "" {
			claims[p.ProviderChargeID] = append(claims[p.ProviderChargeID], p.ID)
		}
	}
	x := ev.explain()
	var ex []string
	held := 0
	for _, c := range money {
		pid := c.Metadata["payment_id"]
		p := byID[pid]
		var why string
		switch {
		case x.payments[pid]:
			held++ // payd holds it for its amount, until an operator corrects it
			continue
		case p == nil:
			why = fmt.Sprintf("no payment %q", pid)
		case p.State != "succeeded":
			why = fmt.Sprintf("payment %s is %s", p.ID, p.State)
		case p.ProviderChargeID != c.ID:
			why = fmt.Sprintf("payment %s records charge %q", p.ID, p.ProviderChargeID)
		case len(claims[c.ID]) > 1:
			why = fmt.Sprintf("payments %s all record it", strings.Join(claims[c.ID], ", "))
		default:
			continue
		}
		tr.LostCharges++
		ex = append(ex, fmt.Sprintf("%s (%d %s, %s): %s", c.ID, c.Amount, c.Currency, c.Metadata["reference"], why))
	}
	c := Check{Name: "no lost charge", Status: Pass,
		Detail: fmt.Sprintf("each of %s succeeded provider charges belongs to one succeeded payment", itoa(len(money)-held))}
	if held > 0 {
		c.Detail += fmt.Sprintf(", or to one held for its amount (%s)", itoa(held))
	}
	if tr.LostCharges > 0 {
		c.Status = Fail
		c.Detail = fmt.Sprintf("%s of %s succeeded provider charges have no succeeded payment of their own", itoa(tr.LostCharges), itoa(len(money)))
		c.Examples = examples(ex)
	}
	return c
}

// noPhantomSuccess: every succeeded payment has its provider charge, for
// its amount.
func (ev *evidence) noPhantomSuccess(money []provider.Charge) Check {
	have := map[string]provider.Charge{}
	for _, c := range money {
		have[c.ID] = c
	}
	var ex []string
	succeeded := 0
	for _, p := range ev.payments {
		if p.State != "succeeded" {
			continue
		}
		succeeded++
		switch c, ok := have[p.ProviderChargeID]; {
		case !ok:
			ex = append(ex, fmt.Sprintf("payment %s (%s) succeeded with charge %q, which the provider does not have", p.ID, p.Reference, p.ProviderChargeID))
		case c.Amount != p.Amount:
			ex = append(ex, fmt.Sprintf("payment %s (%s) succeeded for %d with charge %s, which the provider made for %d", p.ID, p.Reference, p.Amount, c.ID, c.Amount))
		}
	}
	c := Check{Name: "every succeeded payment was charged", Status: Pass,
		Detail: fmt.Sprintf("%s succeeded payments, each with its provider charge for its amount", itoa(succeeded))}
	if len(ex) > 0 {
		c.Status = Fail
		c.Detail = fmt.Sprintf("%s succeeded payments have no provider charge for their amount", itoa(len(ex)))
		c.Examples = examples(ex)
	}
	return c
}

// answersMatch: every 2xx a client got names the payment its key made,
// and a final status in it is the payment's final state.
func (ev *evidence) answersMatch(tr *TargetReport, byID map[string]*paymentRow) Check {
	var ex []string
	total := 0
	for _, r := range ev.records {
		r.mu.Lock()
		ids := map[string]bool{}
		for _, s := range r.seen {
			total++
			ids[s.ID] = true
			p := byID[s.ID]
			var why string
			switch {
			case p == nil:
				why = "no such payment"
			case p.Reference != r.plan.reference:
				why = fmt.Sprintf("that payment is for %s", p.Reference)
			case isFinal(s.State) && p.State != s.State:
				why = fmt.Sprintf("the payment ended %s", p.State)
			default:
				continue
			}
			tr.Mismatched2xx++
			ex = append(ex, fmt.Sprintf("%s got %d %s %s: %s", r.plan.key, s.Status, s.ID, s.State, why))
		}
		if len(ids) > 1 {
			tr.Mismatched2xx++
			ex = append(ex, fmt.Sprintf("%s got 2xx for %d different charges: %s", r.plan.key, len(ids), strings.Join(sortedKeys(ids), ", ")))
		}
		if r.final != "" && len(r.seen) > 0 {
			if p := byID[r.seen[0].ID]; p != nil && p.State != r.final {
				tr.Mismatched2xx++
				ex = append(ex, fmt.Sprintf("%s was seen %s, and ended %s", r.plan.key, r.final, p.State))
			}
		}
		r.mu.Unlock()
	}
	c := Check{Name: "every 2xx matches the final state", Status: Pass,
		Detail: fmt.Sprintf("%s 2xx answers, each naming its key's payment and its final state", itoa(total))}
	if tr.Mismatched2xx > 0 {
		c.Status = Fail
		c.Detail = fmt.Sprintf("%s of %s 2xx answers disagree with the final state", itoa(tr.Mismatched2xx), itoa(total))
		c.Examples = examples(ex)
	}
	return c
}

// noneStuck: no payment is left non-terminal after the drain, but those
// held with their hold explained, which wait for an operator.
func (ev *evidence) noneStuck(tr *TargetReport) Check {
	x := ev.explain()
	var ex []string
	for _, p := range ev.payments {
		if !isFinal(p.State) && !x.payments[p.ID] {
			tr.StuckPayments++
			ex = append(ex, fmt.Sprintf("payment %s (%s) is %s", p.ID, p.Reference, p.State))
		}
	}
	c := Check{Name: "no payment stuck", Status: Pass,
		Detail: fmt.Sprintf("all %s payments are succeeded or failed", itoa(len(ev.payments)))}
	if n := len(x.payments); n > 0 {
		c.Detail = fmt.Sprintf("all %s payments are succeeded or failed, but %s held for their amount", itoa(len(ev.payments)), itoa(n))
	}
	if tr.StuckPayments > 0 {
		c.Status = Fail
		c.Detail = fmt.Sprintf("%s payments are not final after the drain", itoa(tr.StuckPayments))
		c.Examples = examples(ex)
	}
	return c
}

// refundsMatch: the provider refunded each charge exactly what payd says
// it refunded, never more than the charge, and at least every refund a
// client was told succeeded. A refund payd holds with its hold explained
// is not in payd's amount_refunded, and its provider refund is left out.
func (ev *evidence) refundsMatch() Check {
	x := ev.explain()
	atProvider := map[string]int64{}
	for _, r := range ev.refunds {
		if r.Status == provider.StatusSucceeded && !x.refundKeys[r.IdempotencyKey] {
			atProvider[r.ChargeID] += r.Amount
		}
	}
	// A held refund keeps its amount reserved on its payment, which payd's
	// amount_refunded counts; the provider's other amount is not counted.
	reserved := map[string]int64{} // by payment id
	if ev.store != nil {
		for _, r := range ev.store.refunds {
			if x.refunds[r.ID] {
				reserved[r.PaymentID] += r.Amount
			}
		}
	}
	acked := map[string]int64{} // by payment id: refunds clients saw succeed
	n := 0
	for _, r := range ev.records {
		r.mu.Lock()
		if r.refund != nil && r.refund.Status == "succeeded" && len(r.seen) > 0 {
			acked[r.seen[0].ID] += r.refund.Amount
			n++
		}
		r.mu.Unlock()
	}
	var ex []string
	for _, p := range ev.payments {
		got := atProvider[p.ProviderChargeID]
		switch {
		case got > p.Amount:
			ex = append(ex, fmt.Sprintf("payment %s: the provider refunded %d of a charge of %d", p.ID, got, p.Amount))
		case got+reserved[p.ID] != p.AmountRefunded:
			ex = append(ex, fmt.Sprintf("payment %s: payd says %d refunded (%d of it reserved by held refunds), the provider %d",
				p.ID, p.AmountRefunded, reserved[p.ID], got))
		case got < acked[p.ID]:
			ex = append(ex, fmt.Sprintf("payment %s: clients were told %d was refunded, the provider has %d", p.ID, acked[p.ID], got))
		}
	}
	c := Check{Name: "refunds match the provider", Status: Pass,
		Detail: fmt.Sprintf("%s refunds acknowledged as succeeded; every payment's amount_refunded equals the provider's", itoa(n))}
	if len(ex) > 0 {
		c.Status = Fail
		c.Detail = fmt.Sprintf("%s payments whose refunds disagree with the provider", itoa(len(ex)))
		c.Examples = examples(ex)
	}
	return c
}

// clientStats fills the clients' counts and the latencies.
func (ev *evidence) clientStats(tr *TargetReport) {
	var accept, settle []time.Duration
	cs := &tr.Clients
	for _, r := range ev.records {
		if r.plan.i < 0 {
			continue // the harness's own probe, not the workload
		}
		r.mu.Lock()
		cs.Charges++
		if r.plan.double {
			cs.DoubleClicks++
		}
		if r.plan.wait > 0 {
			cs.PreferWait++
		}
		if len(r.seen) > 0 {
			cs.Acknowledged++
			accept = append(accept, r.accepted)
		} else {
			cs.GaveUp++
		}
		if r.settled > 0 {
			settle = append(settle, r.settled)
		}
		if r.refund != nil {
			cs.Refunds++
		}
		r.mu.Unlock()
	}
	tr.LatencyMS = Latency{Accept: percentiles(accept), Settle: percentiles(settle)}
}

// minServed is the share of charges payd must have acknowledged for a run
// to pass: the oracles look for money gone wrong, and a payd that accepts
// nothing moves no money and would pass them all.
const minServed = 0.5

// served: payd acknowledged at least minServed of the charges started, and
// some of them were charged.
func served(tr *TargetReport) Check {
	cs := tr.Clients
	c := Check{Name: "payd served the workload", Status: Pass,
		Detail: fmt.Sprintf("%s of %s charges acknowledged, %s charged", itoa(cs.Acknowledged), itoa(cs.Charges), itoa(tr.MoneyCharges))}
	if cs.Charges == 0 || float64(cs.Acknowledged) < minServed*float64(cs.Charges) || tr.MoneyCharges == 0 {
		c.Status = Fail
		c.Detail += fmt.Sprintf(": at least %.0f%% must be acknowledged and some charged, or the other checks prove nothing", 100*minServed)
	}
	return c
}

// injected: every fault the schedule called for was set. A fault that
// could not be set leaves the report claiming a condition the run never
// had.
func injected(errs []string) Check {
	c := Check{Name: "every fault was injected", Status: Pass, Detail: "every provider, proxy and webhook fault was set as scheduled"}
	if len(errs) > 0 {
		c.Status, c.Detail, c.Examples = Fail, fmt.Sprintf("%d faults could not be set", len(errs)), examples(errs)
	}
	return c
}

// startedAgain: every payd process the harness started became ready. A
// database fault can stop a start (payd exits when its database does not
// answer, and is started again), so with database faults injected a failed
// start is counted but not a violation; without them nothing explains one.
func startedAgain(failures []string, dbFaults bool) Check {
	c := Check{Name: "payd started whenever it was started", Status: Pass, Detail: "every payd process became ready"}
	switch {
	case len(failures) == 0:
	case dbFaults:
		c.Detail = fmt.Sprintf("%d processes did not become ready while database faults were injected, and were started again (their logs: --keep)", len(failures))
	default:
		c.Status, c.Detail, c.Examples = Fail, fmt.Sprintf("%d processes did not become ready, with no database fault to explain it", len(failures)), examples(failures)
	}
	return c
}

// unexpectedAnswers: the clients got nothing a correct server would not
// send (a 422 for a retry with the same body, a 404 for its own charge…).
func unexpectedAnswers(records []*record) Check {
	var ex []string
	for _, r := range records {
		r.mu.Lock()
		for _, u := range r.unexpected {
			ex = append(ex, r.plan.key+": "+u)
		}
		r.mu.Unlock()
	}
	c := Check{Name: "no unexpected answers", Status: Pass, Detail: "every answer was a 2xx, a 409, a 429 or a 5xx to retry"}
	if len(ex) > 0 {
		c.Status = Fail
		c.Detail = fmt.Sprintf("%s answers a retrying client should never get", itoa(len(ex)))
		c.Examples = examples(ex)
	}
	return c
}

// clientsDone: every client saw its charge, and its refund, reach a final
// state by the end of the drain. One still waiting after its payment is
// final means the API did not show the outcome. A client waiting on a
// payment or refund in held (by id), which no client can see end before
// an operator corrects it, is excused.
func clientsDone(records []*record, held map[string]bool) Check {
	var ex []string
	excused, cameBack := 0, 0
	for _, r := range records {
		r.mu.Lock()
		if r.cameBack {
			cameBack++
		}
		if r.phase != "done" && held[r.waitingOn()] {
			excused++
		} else if r.phase != "done" {
			id := ""
			if len(r.seen) > 0 {
				id = r.seen[0].ID
			}
			waiting := "still waiting to " + r.phase
			if r.stopped > 0 {
				waiting = fmt.Sprintf("stopped following after %s, waiting to %s", r.stopped, r.phase)
			}
			ex = append(ex, fmt.Sprintf("%s (%s) %s; last answer: %s", r.plan.key, id, waiting, cmpOr(r.last, "none")))
		}
		r.mu.Unlock()
	}
	c := Check{Name: "every client saw its outcome", Status: Pass, Detail: "every client saw its charge (and refund) final, or gave up, by the end of the drain"}
	if cameBack > 0 {
		c.Detail += fmt.Sprintf("; %s of them stopped following and saw it when they came back after the drain", itoa(cameBack))
	}
	if excused > 0 {
		c.Detail += fmt.Sprintf(", but %s waiting on held payments or refunds", itoa(excused))
	}
	if len(ex) > 0 {
		c.Status, c.Detail, c.Examples = Fail, fmt.Sprintf("%d clients never saw a final state", len(ex)), examples(ex)
	}
	return c
}

func examples(ex []string) []string {
	sort.Strings(ex)
	if len(ex) > maxExamples {
		return append(slices.Clip(ex[:maxExamples]), fmt.Sprintf("… and %d more", len(ex)-maxExamples))
	}
	return ex
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
