package payments

import (
	"errors"
	"testing"
	"time"

	"github.com/idemhq/idem/payd/internal/provider"
	"github.com/idemhq/idem/payd/internal/simulator"
)

// TestCorrectionPostsAndAudits: each correction of a final state posts
// what the change means and leaves the books verified: a failed charge
// the provider made is posted; a succeeded charge the provider does not
// have is reversed; a succeeded refund the provider does not have gives
// the merchant its amount back. What a state cannot fix is refused: a
// provider charge of another amount, a key payd has nothing under.
func TestCorrectionPostsAndAudits(t *testing.T) {
	eachDatabase(t, func(t *testing.T, s *Store) {
		sim := newSim(t, simulator.Faults{})
		prov := sim.client(t, time.Second)
		ctx := t.Context()

		// Failed by payd, charged by the provider.
		lost := newPaymentOf(t, s, 1000)
		settleClaimed(t, s, lost, Outcome{State: StateFailed, FailureCode: "provider_no_record"})
		ch, err := prov.Charge(ctx, chargeRequest(lost))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.ApplyEvent(ctx, prov, chargeEvent(t, "evt_lost", ch)); err != nil {
			t.Fatal(err)
		}
		c, err := s.Correct(ctx, prov, CorrectParams{MismatchID: openMismatchID(t, s, MismatchLostCharge, lost.ProviderKey), Actor: "operator test", Reason: "charged late"})
		if err != nil || c.To != StateSucceeded || c.Posted != txnCharge {
			t.Fatalf("correct the lost charge: %+v %v", c, err)
		}
		if b := balanceOf(t, s); b.Available != 1000 {
			t.Fatalf("balance %+v, want the corrected charge posted", b)
		}

		// Succeeded in payd (by a bug), never charged.
		phantom := newPaymentOf(t, s, 300)
		settleClaimed(t, s, phantom, Outcome{State: StateSucceeded, ProviderID: "ch_phantom"})
		time.Sleep(5 * time.Millisecond)
		if _, err := NewReconciler(s, prov, &ReconcilerConfig{Window: time.Hour, Grace: time.Millisecond}).RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		c, err = s.Correct(ctx, prov, CorrectParams{MismatchID: openMismatchID(t, s, MismatchMissingCharge, phantom.ProviderKey), Actor: "operator test", Reason: "never charged"})
		if err != nil || c.To != StateFailed || c.Posted != txnChargeReversal {
			t.Fatalf("correct the phantom charge: %+v %v", c, err)
		}
		if b := balanceOf(t, s); b.Available != 1000 {
			t.Fatalf("balance %+v, want the phantom reversed", b)
		}

		// A succeeded refund the provider never made.
		r, err := s.CreateRefund(ctx, "acct_test", lost.ID, 250)
		if err != nil {
			t.Fatal(err)
		}
		rc, _ := s.ClaimDueRefund(ctx, time.Minute)
		if err := s.SettleRefund(ctx, rc, Outcome{State: StateSucceeded, ProviderID: "re_phantom"}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
		if _, err := NewReconciler(s, prov, &ReconcilerConfig{Window: time.Hour, Grace: time.Millisecond}).RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		c, err = s.Correct(ctx, prov, CorrectParams{MismatchID: openMismatchID(t, s, MismatchMissingRefund, r.ProviderKey), Actor: "operator test", Reason: "never refunded"})
		if err != nil || c.To != StateFailed || c.Posted != txnRefundCorrectionReversal {
			t.Fatalf("correct the phantom refund: %+v %v", c, err)
		}
		if b, got := balanceOf(t, s), awaitFinal(t, s, lost.ID); b.Available != 1000 || got.AmountRefunded != 0 {
			t.Fatalf("balance %+v, %d refunded, want 1000 and 0", b, got.AmountRefunded)
		}

		// Refused: another amount at the provider; a key payd has nothing under.
		small := newPaymentOf(t, s, 1999)
		req := chargeRequest(small)
		req.Amount = 1
		ch, _ = prov.Charge(ctx, req)
		if err := s.ApplyEvent(ctx, prov, chargeEvent(t, "evt_small", ch)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Correct(ctx, prov, CorrectParams{MismatchID: openMismatchID(t, s, MismatchAmount, small.ProviderKey), Actor: "operator test", Reason: "try"}); !errors.Is(err, ErrNotCorrectable) {
			t.Fatalf("correcting another amount: %v, want ErrNotCorrectable", err)
		}
		stranger, _ := prov.Charge(ctx, provider.ChargeRequest{IdempotencyKey: "not_payds", Amount: 5, Currency: "usd"})
		if err := s.ApplyEvent(ctx, prov, chargeEvent(t, "evt_stranger", stranger)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Correct(ctx, prov, CorrectParams{MismatchID: openMismatchID(t, s, MismatchLostCharge, "not_payds"), Actor: "operator test", Reason: "try"}); !errors.Is(err, ErrNotCorrectable) {
			t.Fatalf("correcting a charge payd never made: %v, want ErrNotCorrectable", err)
		}
		mustVerify(t, s, prov)
	})
}

// settleClaimed claims p, pending, and settles it with o.
func settleClaimed(t *testing.T, s *Store, p *Payment, o Outcome) {
	t.Helper()
	c, err := s.ClaimPending(t.Context(), p.ID, time.Minute)
	if err != nil || c == nil {
		t.Fatalf("claim %s: %v", p.ID, err)
	}
	if _, err := s.Settle(t.Context(), c, o); err != nil {
		t.Fatal(err)
	}
}

// openMismatchID is the id of the open mismatch of kind about the
// provider key.
func openMismatchID(t *testing.T, s *Store, kind, key string) string {
	t.Helper()
	open, _ := s.OpenMismatches(t.Context())
	for _, m := range open {
		if m.Kind == kind && m.ProviderKey == key {
			return m.ID
		}
	}
	t.Fatalf("no open %s about %s in %+v", kind, key, open)
	return ""
}
