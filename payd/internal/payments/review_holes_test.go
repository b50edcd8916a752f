package payments

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemhq/idem/payd/internal/database"
	"github.com/idemhq/idem/payd/internal/provider"
	"github.com/idemhq/idem/payd/internal/simulator"
)

// The paths a review of the unknown-outcome rule found still open, each a
// test that failed before its fix.

// providerBehind serves sim's API with front deciding first: it answers a
// request itself (true) or lets the simulator (false).
func providerBehind(t *testing.T, sim *testSim, timeout time.Duration, front func(w http.ResponseWriter, r *http.Request) bool) *provider.Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !front(w, r) {
			sim.Sim.Handler().ServeHTTP(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	c, err := provider.NewClient(srv.URL, &provider.ClientConfig{Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// lateSim is a simulator that executes every new charge or refund 1.5s
// after it took it, its response lost.
func lateSim(t *testing.T) *testSim {
	t.Helper()
	return newSim(t, simulator.Faults{LateRate: 1, LateMin: 1500 * time.Millisecond, LateMax: 1500 * time.Millisecond})
}

// succeededOnce waits for the payment to be final and checks it succeeded,
// never failed on the way, with the one charge the provider made.
func succeededOnce(t *testing.T, s *Store, sim *testSim, id string) {
	t.Helper()
	seen, p := statesOf(t, s, id, (*Payment).Final)
	charges := chargesFor(sim, p.ProviderKey)
	if slices.Contains(seen, StateFailed) || p.State != StateSucceeded || len(charges) != 1 || charges[0].Status != provider.StatusSucceeded {
		t.Fatalf("payment went through %v (%q) with %d provider charges under its key, want never failed, succeeded, 1", seen, p.FailureCode, len(charges))
	}
}

// TestResendRefusalWaitsForTheFirst: the first request is taken and
// executed late; every re-send is refused with a 403 (an API key rotated
// meanwhile), which says nothing of the first. The payment is not failed
// on the refusal (before the fix it was, at once: a ghost charge); the
// provider's charge settles it.
func TestResendRefusalWaitsForTheFirst(t *testing.T) {
	eachDatabase(t, func(t *testing.T, s *Store) {
		sim := lateSim(t)
		var posts atomic.Int32
		prov := providerBehind(t, sim, 200*time.Millisecond, func(w http.ResponseWriter, r *http.Request) bool {
			if r.Method != http.MethodPost || posts.Add(1) == 1 {
				return false
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(`{"error":{"code":"forbidden","message":"api key expired"}}`))
			return true
		})
		cfg := fastConfig()
		cfg.MaxAttempts = 5
		startProcessor(t, s, prov, cfg)
		succeededOnce(t, s, sim, newPayment(t, s, "order-403").ID)
		if posts.Load() < 2 {
			t.Fatalf("%d POSTs, want the request sent again and refused", posts.Load())
		}
	})
}

// TestFiveHundredsCountAsSent: a provider that answers 500 after it took
// the request (as Stripe's may) and executes it later. A 500 counts as a
// request that may be outstanding, so the spent payment is not failed on
// the first "not found" (before the fix it was: provider_unavailable, and
// then charged); the late charge settles it.
func TestFiveHundredsCountAsSent(t *testing.T) {
	eachDatabase(t, func(t *testing.T, s *Store) {
		sim := lateSim(t)
		prov := providerBehind(t, sim, 200*time.Millisecond, func(w http.ResponseWriter, r *http.Request) bool {
			if r.Method != http.MethodPost {
				return false
			}
			body, _ := io.ReadAll(r.Body)
			req := r.Clone(context.WithoutCancel(r.Context()))
			req.Body = io.NopCloser(bytes.NewReader(body))
			go func() {
				defer func() { recover() }() // the late request's connection is the recorder's
				sim.Sim.Handler().ServeHTTP(httptest.NewRecorder(), req)
			}()
			w.WriteHeader(http.StatusInternalServerError)
			return true
		})
		cfg := fastConfig()
		cfg.MaxAttempts = 2
		startProcessor(t, s, prov, cfg)
		succeededOnce(t, s, sim, newPayment(t, s, "order-500").ID)
	})
}

// TestCorrectionWaitsForOutstandingRequests: an operator corrects the
// escalated mismatch of a payment whose request went out a moment ago and
// that the provider has no record of yet. The correction refuses to fail
// it (before the fix it did, and the provider then charged), and once
// the provider has charged, the correction settles it succeeded.
func TestCorrectionWaitsForOutstandingRequests(t *testing.T) {
	eachDatabase(t, func(t *testing.T, s *Store) {
		sim := lateSim(t)
		prov := sim.client(t, 200*time.Millisecond)
		ctx := t.Context()
		p := newPaymentOf(t, s, 1000)
		c, _ := s.ClaimDue(ctx, time.Minute)
		if _, err := prov.Charge(ctx, chargeRequest(c.Payment)); provider.KindOf(err) != provider.KindUnknown {
			t.Fatalf("charge: %v, want unknown", err)
		}
		if _, err := s.Settle(ctx, c, Outcome{State: StateUnknown, Sent: true, Due: time.Hour}); err != nil {
			t.Fatal(err)
		}
		m := &Mismatch{Kind: MismatchUnresolved, ProviderKey: p.ProviderKey, AccountID: p.AccountID, PaymentID: p.ID, SubjectAt: p.CreatedAt, Detail: "escalated"}
		if err := s.record(ctx, m); err != nil {
			t.Fatal(err)
		}
		cp := CorrectParams{MismatchID: m.ID, Actor: "operator test", Reason: "the provider has nothing", MaxProviderDelay: time.Minute}
		if corr, err := s.Correct(ctx, prov, cp); err == nil {
			t.Fatalf("correction %+v while a request under the key was sent a moment ago, want it refused", corr)
		}
		if got, _ := s.Get(ctx, "acct_test", p.ID); got.State != StateUnknown {
			t.Fatalf("payment %s after the refused correction, want unknown", got.State)
		}
		for deadline := time.Now().Add(10 * time.Second); len(chargesFor(sim, p.ProviderKey)) == 0; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the provider never executed the late charge")
			}
		}
		corr, err := s.Correct(ctx, prov, cp)
		if err != nil || corr.To != StateSucceeded || corr.Posted != txnCharge {
			t.Fatalf("correction once the provider charged: %+v %v, want succeeded and posted", corr, err)
		}
	})
}

// lookupHook is a provider whose ChargeByKey runs hook first.
type lookupHook struct {
	*provider.Client
	hook func()
}

func (l *lookupHook) ChargeByKey(ctx context.Context, key string) (provider.Charge, error) {
	l.hook()
	return l.Client.ChargeByKey(ctx, key)
}

// TestCorrectionRacesARefund: a refund accepted while a correction of its
// succeeded charge to failed looks the charge up is seen: the correction
// changes nothing (before the fix, the charge was reversed with a refund
// reserved and pending against it).
func TestCorrectionRacesARefund(t *testing.T) {
	eachDatabase(t, func(t *testing.T, s *Store) {
		sim := newSim(t, simulator.Faults{})
		ctx := t.Context()
		p := newPaymentOf(t, s, 1000)
		c, _ := s.ClaimPending(ctx, p.ID, time.Minute)
		if _, err := s.Settle(ctx, c, Outcome{State: StateSucceeded, ProviderID: "ch_phantom"}); err != nil {
			t.Fatal(err)
		}
		m := &Mismatch{Kind: MismatchMissingCharge, ProviderKey: p.ProviderKey, AccountID: p.AccountID, PaymentID: p.ID, SubjectAt: p.CreatedAt, Detail: "phantom"}
		if err := s.record(ctx, m); err != nil {
			t.Fatal(err)
		}
		prov := &lookupHook{Client: sim.client(t, time.Second), hook: func() {
			if _, err := s.CreateRefund(ctx, "acct_test", p.ID, 400); err != nil {
				t.Error(err)
			}
		}}
		_, err := s.Correct(ctx, prov, CorrectParams{MismatchID: m.ID, Actor: "operator test", Reason: "never charged"})
		got, _ := s.Get(ctx, "acct_test", p.ID)
		if err == nil || got.State != StateSucceeded || got.AmountRefunded != 400 {
			t.Fatalf("correction: %v; payment %s with %d refunded; want refused, succeeded, the refund's 400 reserved", err, got.State, got.AmountRefunded)
		}
	})
}

// TestRefundsWithoutMetadata: refunds payd sent before it sent metadata
// (so the provider's records state no refund id) are judged by key,
// amount and charge: one in flight is settled, not held for ever (before
// the fix it was held, and no correction could lift it), and one settled
// before passes reconciliation instead of opening a mismatch.
func TestRefundsWithoutMetadata(t *testing.T) {
	eachDatabase(t, func(t *testing.T, s *Store) {
		sim := newSim(t, simulator.Faults{})
		prov := sim.client(t, time.Second)
		ctx := t.Context()
		p := newPaymentOf(t, s, 1000)
		claim, _ := s.ClaimDue(ctx, time.Minute)
		ch, err := prov.Charge(ctx, chargeRequest(claim.Payment))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Settle(ctx, claim, judgeCharge(claim.Payment, ch)); err != nil {
			t.Fatal(err)
		}
		oldRequest := func(r *Refund) provider.Refund { // no metadata, as sent before
			pr, err := prov.Refund(ctx, provider.RefundRequest{IdempotencyKey: r.ProviderKey, ChargeID: ch.ID, Amount: r.Amount})
			if err != nil {
				t.Fatal(err)
			}
			return pr
		}
		settled, _ := s.CreateRefund(ctx, "acct_test", p.ID, 300)
		rc, _ := s.ClaimDueRefund(ctx, time.Minute)
		if err := s.SettleRefund(ctx, rc, Outcome{State: StateSucceeded, ProviderID: oldRequest(settled).ID}); err != nil {
			t.Fatal(err)
		}
		inFlight, _ := s.CreateRefund(ctx, "acct_test", p.ID, 400)
		rc, _ = s.ClaimDueRefund(ctx, time.Minute)
		oldRequest(inFlight)
		if err := s.SettleRefund(ctx, rc, Outcome{State: StateUnknown, Sent: true}); err != nil {
			t.Fatal(err)
		}
		startProcessor(t, s, prov, fastConfig())
		if got := awaitRefund(t, s, p.ID, inFlight.ID); got.State != StateSucceeded || got.Hold != "" {
			t.Fatalf("the refund in flight is %s, held %q; want succeeded", got.State, got.Hold)
		}
		time.Sleep(5 * time.Millisecond)
		if _, err := NewReconciler(s, prov, &ReconcilerConfig{Window: time.Hour, Grace: time.Millisecond}).RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		if open, _ := s.OpenMismatches(ctx); len(open) != 0 {
			t.Fatalf("open mismatches %+v, want none for refunds the provider made as asked", open)
		}
		mustVerify(t, s, prov)
	})
}

// TestWebhookNeverLiftsAHoldOnItsOwn: a payment held because the
// provider's charge under its key is of 1, not 1999, and then a signed
// event claiming 1999 for that key. The provider's record decides, not
// the event's copy: the payment stays held and nothing is posted (before
// the fix, the event settled it and posted 1999).
func TestWebhookNeverLiftsAHoldOnItsOwn(t *testing.T) {
	eachDatabase(t, func(t *testing.T, s *Store) {
		sim := newSim(t, simulator.Faults{})
		prov := sim.client(t, time.Second)
		ctx := t.Context()
		p := newPaymentOf(t, s, 1999)
		req := chargeRequest(p)
		req.Amount = 1
		ch, err := prov.Charge(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.ApplyEvent(ctx, prov, chargeEvent(t, "evt_small", ch)); err != nil {
			t.Fatal(err)
		}
		forged := ch
		forged.Amount = 1999
		if err := s.ApplyEvent(ctx, prov, chargeEvent(t, "evt_claims_1999", forged)); err != nil {
			t.Fatal(err)
		}
		got, _ := s.Get(ctx, "acct_test", p.ID)
		if got.Final() || got.Hold != MismatchAmount {
			t.Fatalf("held payment %s (hold %q) after an event claiming 1999, want still held", got.State, got.Hold)
		}
		if bs, _ := s.Balances(ctx, "acct_test"); len(bs) != 0 {
			t.Fatalf("balances %+v, want nothing posted", bs)
		}
	})
}

// TestVerifyChecksCurrencies: a charge posted in another currency than its
// payment's fails verify (before the fix, every check passed).
func TestVerifyChecksCurrencies(t *testing.T) {
	eachDatabase(t, func(t *testing.T, s *Store) {
		sim := newSim(t, simulator.Faults{})
		prov := sim.client(t, time.Second)
		ctx := t.Context()
		p := newPaymentOf(t, s, 1000)
		c, _ := s.ClaimDue(ctx, time.Minute)
		ch, err := prov.Charge(ctx, chargeRequest(c.Payment))
		if err != nil {
			t.Fatal(err)
		}
		err = s.db.InTx(ctx, func(q database.Querier) error {
			if _, err := q.Exec(ctx, s.dialect.sql(`UPDATE payments SET state = 'succeeded', provider_charge_id = $2 WHERE id = $1`), p.ID, ch.ID); err != nil {
				return err
			}
			return s.postCharge(ctx, q, p.ID, p.AccountID, "eur", p.Amount)
		})
		if err != nil {
			t.Fatal(err)
		}
		if r, err := s.Verify(ctx, prov, time.Minute); err != nil || r.OK() {
			t.Fatalf("verify of a usd payment posted in eur: OK %v (%v), want a violation", r.OK(), err)
		}
	})
}
