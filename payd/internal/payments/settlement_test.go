package payments

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idemhq/idem/payd/internal/provider"
	"github.com/idemhq/idem/payd/internal/simulator"
)

// newPaymentOf is newPayment with an amount: one ending in 02 is declined
// by the simulator.
func newPaymentOf(t *testing.T, s *Store, amount int64) *Payment {
	t.Helper()
	p, err := s.Create(t.Context(), NewPayment{AccountID: "acct_test", Amount: amount, Currency: "usd", Reference: "order"})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// chargeRequest is the provider request payd's worker sends for p.
func chargeRequest(p *Payment) provider.ChargeRequest {
	return provider.ChargeRequest{IdempotencyKey: p.ProviderKey, Amount: p.Amount, Currency: p.Currency,
		Metadata: map[string]string{"payment_id": p.ID, "reference": p.Reference}}
}

// awaitRefund polls the payment's refunds until refund id is final.
func awaitRefund(t *testing.T, s *Store, paymentID, id string) *Refund {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; {
		rs, err := s.Refunds(t.Context(), paymentID)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if r.ID == id && (r.State == StateSucceeded || r.State == StateFailed) {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("refund %s not final after 20s: %+v", id, rs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// mustVerify fails the test unless every invariant holds.
func mustVerify(t *testing.T, s *Store, prov ProviderRecords) {
	t.Helper()
	r, err := s.Verify(t.Context(), prov, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() {
		var b strings.Builder
		r.Print(&b)
		t.Fatalf("payd verify failed:\n%s", b.String())
	}
}

func balanceOf(t *testing.T, s *Store) Balance {
	t.Helper()
	bs, err := s.Balances(t.Context(), "acct_test")
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 1 {
		t.Fatalf("balances %+v, want one currency", bs)
	}
	return bs[0]
}

// TestRefundLifecycle: a partial refund is reserved, paid by a worker and
// posted; refusals change nothing; the ledger and the provider agree.
func TestRefundLifecycle(t *testing.T) {
	eachDatabase(t, func(t *testing.T, s *Store) {
		sim := newSim(t, simulator.Faults{})
		prov := sim.client(t, time.Second)
		startProcessor(t, s, prov, fastConfig())
		p := awaitFinal(t, s, newPaymentOf(t, s, 1999).ID)
		if b := balanceOf(t, s); b.Available != 1999 || b.RefundsPending != 0 {
			t.Fatalf("balance after a 1999 charge: %+v", b)
		}

		r, err := s.CreateRefund(t.Context(), "acct_test", p.ID, 500)
		if err != nil {
			t.Fatal(err)
		}
		if r = awaitRefund(t, s, p.ID, r.ID); r.State != StateSucceeded || r.ProviderRefundID == "" {
			t.Fatalf("refund %s (provider %q), want succeeded", r.State, r.ProviderRefundID)
		}
		if b := balanceOf(t, s); b.Available != 1499 || b.RefundsPending != 0 {
			t.Fatalf("balance after refunding 500: %+v, want 1499 available", b)
		}
		if got, _ := s.Get(t.Context(), "acct_test", p.ID); got.AmountRefunded != 500 {
			t.Fatalf("amount_refunded %d, want 500", got.AmountRefunded)
		}

		_, err = s.CreateRefund(t.Context(), "acct_test", p.ID, 1500)
		if refused, ok := errors.AsType[*RefundRefused](err); !ok || refused.Code != "amount_exceeds_refundable" || refused.Final() {
			t.Fatalf("refunding 1500 of the 1499 left: %v, want amount_exceeds_refundable, which may pass later", err)
		}
		_, err = s.CreateRefund(t.Context(), "acct_test", p.ID, 2000)
		if refused, ok := errors.AsType[*RefundRefused](err); !ok || refused.Code != "amount_too_large" || !refused.Final() {
			t.Fatalf("refunding 2000 of a charge of 1999: %v, want amount_too_large, final", err)
		}
		if _, err := s.CreateRefund(t.Context(), "acct_other", p.ID, 1); !errors.Is(err, ErrNotFound) {
			t.Fatalf("refunding another account's charge: %v, want ErrNotFound", err)
		}
		declined := awaitFinal(t, s, newPaymentOf(t, s, 1002).ID)
		_, err = s.CreateRefund(t.Context(), "acct_test", declined.ID, 1)
		if refused, ok := errors.AsType[*RefundRefused](err); !ok || refused.Code != "charge_not_succeeded" {
			t.Fatalf("refunding a declined charge: %v, want charge_not_succeeded", err)
		}
		if len(sim.Refunds()) != 1 {
			t.Fatalf("provider has %d refunds, want 1: refusals must not reach it", len(sim.Refunds()))
		}
		mustVerify(t, s, prov)
	})
}

// TestConcurrentRefundsNeverExceedTheCharge: 20 concurrent partial
// refunds summing to three times the charge; the accepted ones sum to at
// most the charge, and the provider sees exactly those.
func TestConcurrentRefundsNeverExceedTheCharge(t *testing.T) {
	eachURL(t, func(t *testing.T, url string) {
		s := openStore(t, url)
		sim := newSim(t, simulator.Faults{})
		prov := sim.client(t, time.Second)
		startProcessor(t, s, prov, fastConfig())
		p := awaitFinal(t, s, newPaymentOf(t, s, 1000).ID)

		var (
			mu       sync.Mutex
			accepted []*Refund
			wg       sync.WaitGroup
		)
		other := openStore(t, url) // two pools, as two replicas
		for i := range 20 {
			wg.Go(func() {
				store := []*Store{s, other}[i%2]
				r, err := store.CreateRefund(t.Context(), "acct_test", p.ID, 150)
				if refused, ok := errors.AsType[*RefundRefused](err); ok && refused.Code == "amount_exceeds_refundable" {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				accepted = append(accepted, r)
				mu.Unlock()
			})
		}
		wg.Wait()
		if len(accepted) != 6 {
			t.Fatalf("%d refunds of 150 accepted on a charge of 1000, want 6", len(accepted))
		}
		var keys []string
		for _, r := range accepted {
			awaitRefund(t, s, p.ID, r.ID)
			keys = append(keys, r.ProviderKey)
		}
		var providerKeys []string
		var refunded int64
		for _, r := range sim.Refunds() {
			providerKeys = append(providerKeys, r.IdempotencyKey)
			refunded += r.Amount
		}
		slices.Sort(keys)
		slices.Sort(providerKeys)
		if !slices.Equal(keys, providerKeys) || refunded != 900 {
			t.Fatalf("provider refunded %d under %v; accepted %v", refunded, providerKeys, keys)
		}
		if got, _ := s.Get(t.Context(), "acct_test", p.ID); got.AmountRefunded != 900 {
			t.Fatalf("amount_refunded %d, want 900", got.AmountRefunded)
		}
		mustVerify(t, s, prov)
	})
}

// TestUnknownOutcomesSettleAsTheProviderDid: 100 charges whose responses
// are all lost, half of them declined; each is settled succeeded or failed
// exactly as the provider recorded it.
func TestUnknownOutcomesSettleAsTheProviderDid(t *testing.T) {
	eachDatabase(t, func(t *testing.T, s *Store) {
		sim := newSim(t, simulator.Faults{DropAfterChargeRate: 1})
		prov := sim.client(t, time.Second)
		var ids []string
		for i := range 100 {
			ids = append(ids, newPaymentOf(t, s, int64(1000+2*(i%2))).ID) // 1000 succeeds, 1002 is declined
		}
		startProcessor(t, s, prov, fastConfig())
		for deadline := time.Now().Add(20 * time.Second); len(sim.Charges()) < len(ids); {
			if time.Now().After(deadline) {
				t.Fatalf("the provider has %d charges, want %d", len(sim.Charges()), len(ids))
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err := sim.SetFaults(simulator.Faults{}); err != nil {
			t.Fatal(err)
		}
		byKey := map[string]provider.Charge{}
		for _, c := range sim.Charges() {
			byKey[c.IdempotencyKey] = c
		}
		matched := 0
		for _, id := range ids {
			p := awaitFinal(t, s, id)
			if c := byKey[p.ProviderKey]; c.Status == p.State && c.ID == p.ProviderChargeID {
				matched++
			} else {
				t.Errorf("payment %s is %s; the provider's charge %s is %s", p.ID, p.State, c.ID, c.Status)
			}
		}
		if matched != len(ids) || len(sim.Charges()) != len(ids) {
			t.Fatalf("%d of %d settled as the provider did, with %d provider charges", matched, len(ids), len(sim.Charges()))
		}
		mustVerify(t, s, prov)
	})
}

// chargeEvent is the event the provider sends for ch.
func chargeEvent(t *testing.T, id string, ch provider.Charge) provider.Event {
	t.Helper()
	data, err := json.Marshal(ch)
	if err != nil {
		t.Fatal(err)
	}
	typ := provider.EventChargeSucceeded
	if ch.Status == provider.StatusFailed {
		typ = provider.EventChargeFailed
	}
	return provider.Event{ID: id, Type: typ, Data: data}
}

// TestWebhookSettlesBeforeTheWorker: a worker's provider call is still out
// when the provider's webhook settles the payment; the worker's outcome
// is then refused, and the payment, ledger and audit log show one
// settlement.
func TestWebhookSettlesBeforeTheWorker(t *testing.T) {
	eachDatabase(t, func(t *testing.T, s *Store) {
		sim := newSim(t, simulator.Faults{})
		prov := sim.client(t, time.Second)
		created := newPaymentOf(t, s, 1999)
		claim, err := s.ClaimDue(t.Context(), time.Minute)
		if err != nil || claim == nil {
			t.Fatalf("claim: %v %v", claim, err)
		}
		ch, err := prov.Charge(t.Context(), chargeRequest(claim.Payment))
		if err != nil {
			t.Fatal(err)
		}
		ev := chargeEvent(t, "evt_1", ch)
		for range 2 { // a redelivery changes nothing
			if err := s.ApplyEvent(t.Context(), prov, ev); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.Settle(t.Context(), claim, chargeOutcome(ch)); !errors.Is(err, ErrFenced) {
			t.Fatalf("the worker's settle after the webhook's: %v, want ErrFenced", err)
		}
		p, _ := s.Get(t.Context(), "acct_test", created.ID)
		if p.State != StateSucceeded || p.ProviderChargeID != ch.ID || p.Fence != claim.Fence+1 {
			t.Fatalf("payment %s (charge %s, fence %d), want succeeded with %s at fence %d", p.State, p.ProviderChargeID, p.Fence, ch.ID, claim.Fence+1)
		}
		audit, err := s.Audit(t.Context(), p.ID)
		if err != nil || len(audit) != 1 || audit[0].Actor != "webhook" || !strings.Contains(audit[0].Detail, "evt_1") {
			t.Fatalf("audit log %+v (%v), want one entry by the webhook evt_1", audit, err)
		}
		if b := balanceOf(t, s); b.Available != 1999 {
			t.Fatalf("balance %+v, want 1999 posted once", b)
		}
		mustVerify(t, s, prov)
	})
}

// TestLateFailureNeverOverridesSuccess: a charge.failed event for a payment
// that succeeded (stale, or forged by a bug upstream) is checked with the
// provider and changes nothing.
func TestLateFailureNeverOverridesSuccess(t *testing.T) {
	eachDatabase(t, func(t *testing.T, s *Store) {
		sim := newSim(t, simulator.Faults{})
		prov := sim.client(t, time.Second)
		startProcessor(t, s, prov, fastConfig())
		p := awaitFinal(t, s, newPaymentOf(t, s, 1999).ID)
		stale := chargesFor(sim, p.ProviderKey)[0]
		stale.Status, stale.DeclineCode = provider.StatusFailed, "card_declined"
		if err := s.ApplyEvent(t.Context(), prov, chargeEvent(t, "evt_late", stale)); err != nil {
			t.Fatal(err)
		}
		after, _ := s.Get(t.Context(), "acct_test", p.ID)
		open, _ := s.OpenMismatches(t.Context())
		if after.State != StateSucceeded || after.Fence != p.Fence || len(open) != 0 {
			t.Fatalf("after a late charge.failed: %s at fence %d (was %d), mismatches %+v", after.State, after.Fence, p.Fence, open)
		}
	})
}

// TestReconciliation: a run settles a payment the provider charged while
// payd never heard back (audited), finds a charge whose payment was
// deleted behind payd's back and a payment the provider never charged,
// and resolves a mismatch once it is gone.
func TestReconciliation(t *testing.T) {
	eachDatabase(t, func(t *testing.T, s *Store) {
		sim := newSim(t, simulator.Faults{})
		prov := sim.client(t, time.Second)
		ctx := t.Context()

		// Two payments charged and settled; then one deleted behind payd's back.
		kept, deleted := newPaymentOf(t, s, 1000), newPaymentOf(t, s, 2000)
		// One charged at the provider by a worker that died before it heard back.
		orphan := newPaymentOf(t, s, 3000)
		// One recorded succeeded, which the provider never charged.
		phantom := newPaymentOf(t, s, 4000)
		for _, p := range []*Payment{kept, deleted, orphan} {
			if _, err := prov.Charge(ctx, chargeRequest(p)); err != nil {
				t.Fatal(err)
			}
		}
		for _, p := range []*Payment{kept, deleted} {
			if _, err := s.SettleByKey(ctx, p.ProviderKey, chargeOutcome(chargesFor(sim, p.ProviderKey)[0]), "test", "setup"); err != nil {
				t.Fatal(err)
			}
		}
		for _, q := range []string{
			`UPDATE payments SET state = 'succeeded' WHERE id = $1`,
			`DELETE FROM payments WHERE id = $1`,
		} {
			id := phantom.ID
			if strings.HasPrefix(q, "DELETE") {
				id = deleted.ID
			}
			if _, err := s.db.Exec(ctx, s.dialect.sql(q), id); err != nil {
				t.Fatal(err)
			}
		}

		rec := NewReconciler(s, prov, &ReconcilerConfig{Window: time.Hour, Grace: time.Millisecond})
		time.Sleep(5 * time.Millisecond) // past the grace
		run, err := rec.RunOnce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if run.ProviderCharges != 3 || run.Matched != 1 || run.Fixed != 1 || run.Mismatches != 2 {
			t.Fatalf("run %+v, want 3 charges: 1 matched, 1 fixed, and 2 mismatches", run)
		}
		if p, _ := s.Get(ctx, "acct_test", orphan.ID); p.State != StateSucceeded {
			t.Fatalf("the orphaned payment is %s, want settled succeeded", p.State)
		}
		if audit, _ := s.Audit(ctx, orphan.ID); len(audit) != 1 || audit[0].Actor != "reconciliation" {
			t.Fatalf("audit log of the fix: %+v, want one entry by reconciliation", audit)
		}
		open, err := s.OpenMismatches(ctx)
		if err != nil {
			t.Fatal(err)
		}
		kinds := map[string]Mismatch{}
		for _, m := range open {
			kinds[m.Kind] = m
		}
		lost, missing := kinds[MismatchLostCharge], kinds[MismatchMissingCharge]
		if len(open) != 2 || lost.ProviderID != chargesFor(sim, deleted.ProviderKey)[0].ID || missing.PaymentID != phantom.ID {
			t.Fatalf("open mismatches %+v, want the deleted payment's charge and the phantom payment", open)
		}
		if last, err := s.LastRun(ctx); err != nil || last == nil || last.ID != run.ID {
			t.Fatalf("last run %+v (%v), want %s", last, err, run.ID)
		}

		// The provider charges the phantom's key after all: its mismatch is resolved.
		if _, err := prov.Charge(ctx, chargeRequest(phantom)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
		if _, err := rec.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		open, _ = s.OpenMismatches(ctx)
		if len(open) != 1 || open[0].Kind != MismatchLostCharge {
			t.Fatalf("open mismatches after the phantom was charged: %+v, want only the lost charge", open)
		}
	})
}

// TestVerifyFindsTampering: verify passes on an honest ledger; posted rows
// cannot be changed; and once the guard is removed and a posting changed,
// verify fails naming the transaction.
func TestVerifyFindsTampering(t *testing.T) {
	eachDatabase(t, func(t *testing.T, s *Store) {
		sim := newSim(t, simulator.Faults{})
		prov := sim.client(t, time.Second)
		startProcessor(t, s, prov, fastConfig())
		p := awaitFinal(t, s, newPaymentOf(t, s, 1999).ID)
		r, err := s.CreateRefund(t.Context(), "acct_test", p.ID, 999)
		if err != nil {
			t.Fatal(err)
		}
		awaitRefund(t, s, p.ID, r.ID)
		mustVerify(t, s, prov)

		var txn string
		if err := s.db.QueryRow(t.Context(), s.dialect.sql(`SELECT id FROM ledger_transactions WHERE kind = 'charge' AND ref = $1`), p.ID).Scan(&txn); err != nil {
			t.Fatal(err)
		}
		tamper := s.dialect.sql(`UPDATE ledger_entries SET amount = amount + 1 WHERE txn_id = $1 AND line = 1`)
		if _, err := s.db.Exec(t.Context(), tamper, txn); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Fatalf("updating a posted entry: %v, want refused as append-only", err)
		}
		unguard := `ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_append_only`
		if s.Dialect() == "sqlite" {
			unguard = `DROP TRIGGER ledger_entries_no_update`
		}
		if _, err := s.db.Exec(t.Context(), unguard); err != nil {
			t.Fatal(err)
		}
		if _, err := s.db.Exec(t.Context(), tamper, txn); err != nil {
			t.Fatal(err)
		}
		report, err := s.Verify(t.Context(), prov, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		report.Print(&out)
		for _, want := range []string{
			"FAIL  postings sum to zero in every journal transaction",
			"journal transaction " + txn + " sums to 1 usd",
			"FAIL  postings sum to zero overall",
			"FAIL  every balance equals the sum of its postings",
			"FAIL  the ledger and audit log are append-only",
		} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("report lacks %q:\n%s", want, out.String())
			}
		}
		if report.OK() {
			t.Fatal("report OK after tampering")
		}
		t.Log(out.String())
	})
}
