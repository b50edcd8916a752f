package payments

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/idemhq/idem/payd/internal/provider"
	"github.com/idemhq/idem/payd/internal/simulator"
)

// The tests here are the provider that acts after payd stopped waiting:
// responses lost, lookups that answer "not found" while a request is in
// flight, 409s for a key in use, and the request executed later anyway.

// statesOf polls payment id until done says so, and returns every state
// it was seen in, in order, each once.
func statesOf(t *testing.T, s *Store, id string, done func(*Payment) bool) ([]string, *Payment) {
	t.Helper()
	var seen []string
	for deadline := time.Now().Add(30 * time.Second); ; {
		p, err := s.Get(t.Context(), "acct_test", id)
		if err != nil {
			t.Fatal(err)
		}
		if len(seen) == 0 || seen[len(seen)-1] != p.State {
			seen = append(seen, p.State)
		}
		if done(p) {
			return seen, p
		}
		if time.Now().After(deadline) {
			t.Fatalf("payment %s still %s after 30s (seen %v)", id, p.State, seen)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestLateChargeIsNeverFailed: the provider takes the charge request,
// loses its response, answers "not found" to every lookup and 409 to every
// request under the key for longer than all of payd's attempts take, then
// charges. The payment is never failed on the way (on the code before
// this rule it was, once attempts ran out); it ends succeeded with the
// one charge, posted once.
func TestLateChargeIsNeverFailed(t *testing.T) {
	eachDatabase(t, func(t *testing.T, s *Store) {
		const late = 1500 * time.Millisecond
		sim := newSim(t, simulator.Faults{LateRate: 1, LateMin: late, LateMax: late})
		prov := sim.client(t, 200*time.Millisecond)
		cfg := fastConfig()
		cfg.MaxAttempts = 2 // spent long before the provider acts
		startProcessor(t, s, prov, cfg)
		created := newPayment(t, s, "order-late")
		seen, p := statesOf(t, s, created.ID, (*Payment).Final)
		if slices.Contains(seen, StateFailed) || p.State != StateSucceeded {
			t.Fatalf("payment went through %v, want never failed and succeeded", seen)
		}
		charges := chargesFor(sim, p.ProviderKey)
		if len(charges) != 1 || p.ProviderChargeID != charges[0].ID || len(sim.chargeRequests()) < 2 {
			t.Fatalf("%d provider charges (payment records %q) from %d requests, want 1 from the late request and its re-sends",
				len(charges), p.ProviderChargeID, len(sim.chargeRequests()))
		}
		if b := balanceOf(t, s); b.Available != p.Amount {
			t.Fatalf("balance %+v, want the charge posted once", b)
		}
		mustVerify(t, s, prov)
	})
}

// TestLateRefundKeepsItsReservation: the same provider, for a refund. The
// refund is never failed, so its reservation is never released and no
// second refund of what it holds is accepted meanwhile (on the code before
// this rule, the refund failed, the merchant was credited back, and a
// second full refund was accepted while the provider paid the first); the
// provider pays it once, and the books agree.
func TestLateRefundKeepsItsReservation(t *testing.T) {
	eachDatabase(t, func(t *testing.T, s *Store) {
		sim := newSim(t, simulator.Faults{})
		prov := sim.client(t, 200*time.Millisecond)
		cfg := fastConfig()
		cfg.MaxAttempts = 2
		startProcessor(t, s, prov, cfg)
		p := awaitFinal(t, s, newPaymentOf(t, s, 1000).ID)

		const late = 1500 * time.Millisecond
		if err := sim.SetFaults(simulator.Faults{LateRate: 1, LateMin: late, LateMax: late}); err != nil {
			t.Fatal(err)
		}
		r, err := s.CreateRefund(t.Context(), "acct_test", p.ID, 1000)
		if err != nil {
			t.Fatal(err)
		}
		var seen []string
		for deadline := time.Now().Add(30 * time.Second); ; {
			rs, err := s.Refunds(t.Context(), p.ID)
			if err != nil {
				t.Fatal(err)
			}
			if len(seen) == 0 || seen[len(seen)-1] != rs[0].State {
				seen = append(seen, rs[0].State)
			}
			if rs[0].final() {
				break
			}
			if _, err := s.CreateRefund(t.Context(), "acct_test", p.ID, 1000); err == nil {
				t.Fatal("a second full refund was accepted while the first was in flight")
			}
			if time.Now().After(deadline) {
				t.Fatalf("refund still %s after 30s", rs[0].State)
			}
			time.Sleep(5 * time.Millisecond)
		}
		got := awaitRefund(t, s, p.ID, r.ID)
		if slices.Contains(seen, StateFailed) || got.State != StateSucceeded || len(sim.Refunds()) != 1 {
			t.Fatalf("refund went through %v with %d provider refunds, want never failed, succeeded, 1", seen, len(sim.Refunds()))
		}
		if b := balanceOf(t, s); b.Available != 0 || b.RefundsPending != 0 {
			t.Fatalf("balance %+v, want 0: charged 1000, refunded 1000", b)
		}
		if err := sim.SetFaults(simulator.Faults{}); err != nil {
			t.Fatal(err)
		}
		mustVerify(t, s, prov)
	})
}

// TestNotFoundFailsOnlyWhenNothingCanBeOutstanding: a request the provider
// takes and never acts on within the test. The payment stays unknown, and
// is only looked up, until MaxProviderDelay has passed since the last
// request that may have reached the provider; only then does "not found"
// fail it. A provider that refused every request before acting (429s, to
// lookups too) leaves it unknown while it cannot be asked, and fails it at
// its first "not found": nothing can be outstanding.
func TestNotFoundFailsOnlyWhenNothingCanBeOutstanding(t *testing.T) {
	eachDatabase(t, func(t *testing.T, s *Store) {
		const bound = 700 * time.Millisecond
		sim := newSim(t, simulator.Faults{LateRate: 1, LateMin: time.Hour, LateMax: time.Hour})
		cfg := fastConfig()
		cfg.MaxAttempts, cfg.MaxProviderDelay = 2, bound
		startProcessor(t, s, sim.client(t, 100*time.Millisecond), cfg)
		created := newPayment(t, s, "order-held-at-the-provider")
		seen, p := statesOf(t, s, created.ID, (*Payment).Final)
		failedAt := time.Now()
		requests := sim.chargeRequests()
		if p.State != StateFailed || p.FailureCode != "provider_no_record" || !slices.Contains(seen, StateUnknown) {
			t.Fatalf("payment %s %q through %v, want unknown, then failed provider_no_record", p.State, p.FailureCode, seen)
		}
		if last := requests[len(requests)-1]; failedAt.Sub(last) < bound {
			t.Fatalf("failed %s after the last of %d requests, want at least MaxProviderDelay (%s)", failedAt.Sub(last), len(requests), bound)
		}
		if len(requests) > cfg.MaxAttempts {
			t.Fatalf("%d requests, want at most %d: nothing is sent once attempts are spent", len(requests), cfg.MaxAttempts)
		}

		if err := sim.SetFaults(simulator.Faults{RateLimitRate: 1}); err != nil {
			t.Fatal(err)
		}
		refused := newPayment(t, s, "order-refused")
		_, p = statesOf(t, s, refused.ID, func(p *Payment) bool { return p.Attempts > cfg.MaxAttempts+2 })
		if p.Final() {
			t.Fatalf("payment %s while the provider refuses every request, lookups included; want still open", p.State)
		}
		if err := sim.SetFaults(simulator.Faults{}); err != nil {
			t.Fatal(err)
		}
		_, p = statesOf(t, s, refused.ID, (*Payment).Final)
		if p.State != StateFailed || p.FailureCode != "provider_unavailable" || len(chargesFor(sim, p.ProviderKey)) != 0 {
			t.Fatalf("payment refused by every request: %s %q, want failed provider_unavailable, never charged", p.State, p.FailureCode)
		}
	})
}

// TestUnresolvedOutcomeEscalates: near the end of the provider's key
// window (a window of an hour leaves no time before the margin) nothing is
// sent, only looked up; while the lookups fail, the payment escalates: an
// open outcome_unresolved mismatch, a metric and a log line. A lookup
// that finally finds nothing under a key no request was ever sent under
// fails it, and the escalation is resolved.
func TestUnresolvedOutcomeEscalates(t *testing.T) {
	eachDatabase(t, func(t *testing.T, s *Store) {
		sim := newSim(t, simulator.Faults{ErrorRate: 1})
		cfg := fastConfig()
		cfg.KeyWindow, cfg.Metrics = time.Hour, NewMetrics(prometheus.NewRegistry(), s)
		cfg.RetryMax = 100 * time.Millisecond
		startProcessor(t, s, sim.client(t, time.Second), cfg)
		created := newPayment(t, s, "order-window-closing")
		var open []Mismatch
		for deadline := time.Now().Add(20 * time.Second); len(open) == 0; {
			var err error
			if open, err = s.OpenMismatches(t.Context()); err != nil {
				t.Fatal(err)
			}
			if time.Now().After(deadline) {
				t.Fatal("no mismatch opened for an outcome unknown near the end of the key window")
			}
			time.Sleep(10 * time.Millisecond)
		}
		if m := open[0]; len(open) != 1 || m.Kind != MismatchUnresolved || m.PaymentID != created.ID || m.ProviderKey != created.ProviderKey {
			t.Fatalf("open mismatches %+v, want one outcome_unresolved about %s", open, created.ID)
		}
		if n := testutil.ToFloat64(cfg.Metrics.unresolvedOut.WithLabelValues("payment")); n < 1 {
			t.Fatalf("payd_unresolved_outcomes_total %v, want counted", n)
		}
		if err := sim.SetFaults(simulator.Faults{}); err != nil {
			t.Fatal(err)
		}
		_, p := statesOf(t, s, created.ID, (*Payment).Final)
		if p.State != StateFailed || len(sim.chargeRequests()) != 0 {
			t.Fatalf("payment %s after %d charge requests, want failed and never sent near the window's end", p.State, len(sim.chargeRequests()))
		}
		if open, _ := s.OpenMismatches(t.Context()); len(open) != 0 {
			t.Fatalf("open mismatches once it failed: %+v, want the escalation resolved", open)
		}
	})
}

// TestOtherAmountIsHeldNotSettled: the provider charges another amount
// than payd asked for (1998 for 1999) and refunds another than asked. The
// payment is not settled and nothing is posted (on the code before this
// check, it succeeded and the merchant was credited 1999): it is held,
// with an open amount_mismatch, claimed by no worker again; the refund
// likewise, its reservation kept.
func TestOtherAmountIsHeldNotSettled(t *testing.T) {
	eachDatabase(t, func(t *testing.T, s *Store) {
		sim := newSim(t, simulator.Faults{OtherAmountRate: 1})
		prov := sim.client(t, time.Second)
		cfg := fastConfig()
		cfg.Metrics = NewMetrics(prometheus.NewRegistry(), s)
		startProcessor(t, s, prov, cfg)
		created := newPayment(t, s, "order-other-amount")
		_, p := statesOf(t, s, created.ID, func(p *Payment) bool { return p.Hold != "" || p.Final() })
		if p.State != StateUnknown || p.Hold != MismatchAmount || p.ProviderChargeID != "" {
			t.Fatalf("payment %s held %q with charge %q, want unknown, held by amount_mismatch, nothing recorded", p.State, p.Hold, p.ProviderChargeID)
		}
		if bs, _ := s.Balances(t.Context(), "acct_test"); len(bs) != 0 {
			t.Fatalf("balances %+v, want nothing posted", bs)
		}
		open, err := s.OpenMismatches(t.Context())
		if err != nil || len(open) != 1 || open[0].Kind != MismatchAmount || open[0].PaymentID != p.ID || open[0].ProviderID != chargesFor(sim, p.ProviderKey)[0].ID {
			t.Fatalf("open mismatches %+v (%v), want one amount_mismatch about %s and the provider's charge", open, err, p.ID)
		}
		time.Sleep(200 * time.Millisecond) // twenty polls: a held payment is never claimed
		if again, _ := s.Get(t.Context(), "acct_test", p.ID); again.Fence != p.Fence || len(sim.chargeRequests()) != 1 {
			t.Fatalf("fence %d → %d with %d requests: a held payment was claimed again", p.Fence, again.Fence, len(sim.chargeRequests()))
		}
		if n := testutil.ToFloat64(cfg.Metrics.holds.WithLabelValues("payment")); n != 1 {
			t.Fatalf("payd_held_total %v, want 1", n)
		}

		if err := sim.SetFaults(simulator.Faults{}); err != nil {
			t.Fatal(err)
		}
		good := awaitFinal(t, s, newPaymentOf(t, s, 1000).ID)
		if err := sim.SetFaults(simulator.Faults{OtherAmountRate: 1}); err != nil {
			t.Fatal(err)
		}
		r, err := s.CreateRefund(t.Context(), "acct_test", good.ID, 400)
		if err != nil {
			t.Fatal(err)
		}
		var held *Refund
		for deadline := time.Now().Add(20 * time.Second); held == nil; time.Sleep(5 * time.Millisecond) {
			rs, _ := s.Refunds(t.Context(), good.ID)
			if rs[0].Hold != "" || rs[0].final() {
				held = rs[0]
			}
			if time.Now().After(deadline) {
				t.Fatal("refund neither held nor final after 20s")
			}
		}
		if held.ID != r.ID || held.State != StateUnknown || held.Hold != MismatchRefundAmount {
			t.Fatalf("refund %s held %q, want unknown, held by refund_amount_mismatch", held.State, held.Hold)
		}
		if b := balanceOf(t, s); b.Available != 600 || b.RefundsPending != 400 {
			t.Fatalf("balance %+v, want 600 available and the 400 still reserved", b)
		}
		if err := sim.SetFaults(simulator.Faults{}); err != nil {
			t.Fatal(err)
		}
		mustVerify(t, s, prov) // every disagreement has its open mismatch
	})
}

// TestWebhookOfAnotherAmountHolds: a signed charge.succeeded for a
// pending payment of 1999, whose charge at the provider is of 1. On the
// code before this check it settled the payment and credited the merchant
// 1999; now the payment is held with an open mismatch and nothing is
// posted, and a reconciliation run keeps it so.
func TestWebhookOfAnotherAmountHolds(t *testing.T) {
	eachDatabase(t, func(t *testing.T, s *Store) {
		sim := newSim(t, simulator.Faults{})
		prov := sim.client(t, time.Second)
		p := newPaymentOf(t, s, 1999)
		req := chargeRequest(p)
		req.Amount = 1
		ch, err := prov.Charge(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.ApplyEvent(t.Context(), prov, chargeEvent(t, "evt_small", ch)); err != nil {
			t.Fatal(err)
		}
		got, _ := s.Get(t.Context(), "acct_test", p.ID)
		if got.Final() || got.Hold != MismatchAmount || got.Fence != p.Fence+1 {
			t.Fatalf("payment %s held %q at fence %d, want held by amount_mismatch, its fence bumped", got.State, got.Hold, got.Fence)
		}
		if bs, _ := s.Balances(t.Context(), "acct_test"); len(bs) != 0 {
			t.Fatalf("balances %+v, want nothing posted", bs)
		}
		if c, err := s.ClaimDue(t.Context(), time.Minute); err != nil || c != nil {
			t.Fatalf("claim: %+v %v, want a held payment never claimed", c, err)
		}
		time.Sleep(5 * time.Millisecond)
		run, err := NewReconciler(s, prov, &ReconcilerConfig{Window: time.Hour, Grace: time.Millisecond}).RunOnce(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		open, _ := s.OpenMismatches(t.Context())
		if run.Mismatches != 1 || run.Fixed != 0 || len(open) != 1 || open[0].Kind != MismatchAmount {
			t.Fatalf("run %+v, open %+v: want the payment still held, its mismatch open", run, open)
		}
		audit, _ := s.Audit(t.Context(), p.ID)
		if len(audit) != 1 || audit[0].Action != "hold" || audit[0].Actor != "webhook" {
			t.Fatalf("audit log %+v, want the one hold, by the webhook: a run that finds it held already holds nothing again", audit)
		}
		if again, _ := s.Get(t.Context(), "acct_test", p.ID); again.Fence != got.Fence {
			t.Fatalf("fence %d → %d across a reconciliation run of a payment held already", got.Fence, again.Fence)
		}
	})
}

// TestLateRefundEventContradicts: payd failed a refund (here, by hand:
// the way the old rule did on a "not found"), and the provider paid it
// after all: its signed refund.succeeded is compared, found to contradict
// a final state, re-fetched and recorded as an open mismatch (on the code
// before, it got 204 and changed nothing, with no mismatch). Nothing
// changes until an operator's correction, which moves the refund to
// succeeded, takes the amount back from the merchant, posts
// refund_correction, audits and resolves; verify passes on every step.
func TestLateRefundEventContradicts(t *testing.T) {
	eachDatabase(t, func(t *testing.T, s *Store) {
		sim := newSim(t, simulator.Faults{})
		prov := sim.client(t, time.Second)
		p := newPaymentOf(t, s, 1000)
		claim, _ := s.ClaimDue(t.Context(), time.Minute)
		ch, err := prov.Charge(t.Context(), chargeRequest(claim.Payment))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Settle(t.Context(), claim, judgeCharge(claim.Payment, ch)); err != nil {
			t.Fatal(err)
		}
		r, err := s.CreateRefund(t.Context(), "acct_test", p.ID, 600)
		if err != nil {
			t.Fatal(err)
		}
		rc, _ := s.ClaimDueRefund(t.Context(), time.Minute)
		if err := s.SettleRefund(t.Context(), rc, Outcome{State: StateFailed, FailureCode: "provider_unavailable"}); err != nil {
			t.Fatal(err)
		}
		pr, err := prov.Refund(t.Context(), provider.RefundRequest{IdempotencyKey: r.ProviderKey, ChargeID: ch.ID, Amount: 600,
			Metadata: map[string]string{"payment_id": p.ID, "refund_id": r.ID}})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.ApplyEvent(t.Context(), prov, refundEvent(t, "evt_late_refund", provider.EventRefundSucceeded, pr)); err != nil {
			t.Fatal(err)
		}
		open, _ := s.OpenMismatches(t.Context())
		if len(open) != 1 || open[0].Kind != MismatchLostRefund || open[0].RefundID != r.ID || open[0].ProviderID != pr.ID {
			t.Fatalf("open mismatches %+v, want one provider_refund_without_refund about %s", open, r.ID)
		}
		if got := awaitRefund(t, s, p.ID, r.ID); got.State != StateFailed {
			t.Fatalf("refund %s after the event, want still failed until corrected", got.State)
		}
		if b := balanceOf(t, s); b.Available != 1000 {
			t.Fatalf("balance %+v before the correction, want 1000", b)
		}
		mustVerify(t, s, prov)

		mm := open[0].ID
		c, err := s.Correct(t.Context(), prov, CorrectParams{MismatchID: mm, Actor: "operator test", Reason: "the provider paid it late"})
		if err != nil {
			t.Fatal(err)
		}
		if c.From != StateFailed || c.To != StateSucceeded || c.Posted != txnRefundCorrection {
			t.Fatalf("correction %+v, want failed → succeeded with refund_correction", c)
		}
		if got := awaitRefund(t, s, p.ID, r.ID); got.State != StateSucceeded || got.ProviderRefundID != pr.ID {
			t.Fatalf("refund %s (%s) after the correction, want succeeded with %s", got.State, got.ProviderRefundID, pr.ID)
		}
		after, _ := s.Get(t.Context(), "acct_test", p.ID)
		if b := balanceOf(t, s); b.Available != 400 || after.AmountRefunded != 600 {
			t.Fatalf("balance %+v and %d refunded after the correction, want 400 and 600", b, after.AmountRefunded)
		}
		if open, _ := s.OpenMismatches(t.Context()); len(open) != 0 {
			t.Fatalf("open mismatches after the correction: %+v", open)
		}
		audit, _ := s.Audit(t.Context(), p.ID)
		if last := audit[len(audit)-1]; last.Action != "correct" || last.Actor != "operator test" {
			t.Fatalf("audit log %+v, want the correction last", audit)
		}
		if _, err := s.Correct(t.Context(), prov, CorrectParams{MismatchID: mm, Actor: "operator test", Reason: "again"}); err == nil {
			t.Fatal("correcting a resolved mismatch again succeeded")
		}
		mustVerify(t, s, prov)
	})
}

// refundEvent is an event of type typ the provider sends for r.
func refundEvent(t *testing.T, id, typ string, r provider.Refund) provider.Event {
	t.Helper()
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return provider.Event{ID: id, Type: typ, Data: data}
}
