package payments

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/idemhq/idem/internal/testenv"
	"github.com/idemhq/idem/payd/internal/provider"
	"github.com/idemhq/idem/payd/internal/simulator"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestReconciliationResolvesOnlyWhatItChecked: refunds are reconciled
// against the provider's refund listing, and a run resolves only the
// mismatches about keys it looked at and found consistent. A webhook's
// "the provider refunded money payd has no record of" stays open through
// every run (on the code before, the next run resolved it, having never
// looked at refunds); a succeeded refund the provider never made is
// found; a refund the provider made while payd waited is settled; and a
// mismatch whose key a run finds consistent again is resolved.
func TestReconciliationResolvesOnlyWhatItChecked(t *testing.T) {
	eachDatabase(t, func(t *testing.T, s *Store) {
		sim := newSim(t, simulator.Faults{})
		prov := sim.client(t, time.Second)
		ctx := t.Context()
		// No workers: the test moves every state.
		p := newPaymentOf(t, s, 1000)
		claim, _ := s.ClaimDue(ctx, time.Minute)
		ch, err := prov.Charge(ctx, chargeRequest(claim.Payment))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Settle(ctx, claim, judgeCharge(claim.Payment, ch)); err != nil {
			t.Fatal(err)
		}
		// The provider refunds under a key payd never used; its webhook
		// records the mismatch.
		stray, err := prov.Refund(ctx, provider.RefundRequest{IdempotencyKey: "refund_elsewhere", ChargeID: ch.ID, Amount: 100})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.ApplyEvent(ctx, prov, refundEvent(t, "evt_stray", provider.EventRefundSucceeded, stray)); err != nil {
			t.Fatal(err)
		}
		// A refund payd recorded succeeded without the provider (a bug).
		phantom, err := s.CreateRefund(ctx, "acct_test", p.ID, 200)
		if err != nil {
			t.Fatal(err)
		}
		rc, _ := s.ClaimDueRefund(ctx, time.Minute)
		if err := s.SettleRefund(ctx, rc, Outcome{State: StateSucceeded}); err != nil {
			t.Fatal(err)
		}
		// A refund the provider made while payd never heard back.
		pending, err := s.CreateRefund(ctx, "acct_test", p.ID, 300)
		if err != nil {
			t.Fatal(err)
		}
		refundAsPayd := func(r *Refund) provider.RefundRequest {
			return provider.RefundRequest{IdempotencyKey: r.ProviderKey, ChargeID: ch.ID, Amount: r.Amount,
				Metadata: map[string]string{"payment_id": p.ID, "refund_id": r.ID}}
		}
		if _, err := prov.Refund(ctx, refundAsPayd(pending)); err != nil {
			t.Fatal(err)
		}

		rec := NewReconciler(s, prov, &ReconcilerConfig{Window: time.Hour, Grace: time.Millisecond})
		time.Sleep(5 * time.Millisecond)
		for i := range 2 {
			run, err := rec.RunOnce(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if run.ProviderRefunds != 2 || run.Fixed != 1-i {
				t.Fatalf("run %d: %+v, want both provider refunds listed and the pending refund settled once", i, run)
			}
		}
		if got := awaitRefund(t, s, p.ID, pending.ID); got.State != StateSucceeded {
			t.Fatalf("the refund the provider made is %s, want settled succeeded", got.State)
		}
		kinds := map[string]Mismatch{}
		open, _ := s.OpenMismatches(ctx)
		for _, m := range open {
			kinds[m.Kind] = m
		}
		if len(open) != 2 || kinds[MismatchLostRefund].ProviderKey != "refund_elsewhere" || kinds[MismatchMissingRefund].RefundID != phantom.ID {
			t.Fatalf("open after two runs: %+v, want the stray provider refund and the phantom refund", open)
		}

		// The provider makes the phantom's refund after all: the next run
		// finds its key consistent and resolves its mismatch, and only it.
		if _, err := prov.Refund(ctx, refundAsPayd(phantom)); err != nil {
			t.Fatal(err)
		}
		if _, err := rec.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		open, _ = s.OpenMismatches(ctx)
		if len(open) != 1 || open[0].Kind != MismatchLostRefund {
			t.Fatalf("open after the phantom was made: %+v, want only the stray provider refund", open)
		}
	})
}

// TestReconciliationPages: the provider's listings are read a page at a
// time, so a window of more charges than one response may hold is still
// reconciled (on the code before, the listing was one response and a run
// over that size failed every time). Here a response may hold 8 KiB, some
// 20 charges, and a page is 7 of them.
func TestReconciliationPages(t *testing.T) {
	eachDatabase(t, func(t *testing.T, s *Store) {
		sim := newSim(t, simulator.Faults{})
		prov, err := provider.NewClient(sim.url, &provider.ClientConfig{PageSize: 7, MaxResponseBytes: 8 << 10})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(prov.CloseIdleConnections)
		const n = 120
		for range n {
			p := newPaymentOf(t, s, 1000)
			if _, err := prov.Charge(t.Context(), chargeRequest(p)); err != nil {
				t.Fatal(err)
			}
		}
		whole, err := provider.NewClient(sim.url, &provider.ClientConfig{PageSize: n, MaxResponseBytes: 8 << 10})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(whole.CloseIdleConnections)
		if _, err := provider.Collect(whole.Charges(t.Context(), time.Time{}, time.Time{})); err == nil {
			t.Fatal("a single page of every charge fit the response limit: the test proves nothing")
		}
		time.Sleep(5 * time.Millisecond)
		run, err := NewReconciler(s, prov, &ReconcilerConfig{Window: time.Hour, Grace: time.Millisecond}).RunOnce(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if run.ProviderCharges != n || run.Fixed != n {
			t.Fatalf("run %+v, want all %d charges listed and every pending payment settled", run, n)
		}
	})
}

// TestReconcilerSaysWhenItIsStale: a run that fails once is a warning; runs
// failing for longer than StaleAfter intervals set payd_reconciliation_stale
// and log at error level, until a run succeeds again.
func TestReconcilerSaysWhenItIsStale(t *testing.T) {
	var logs testenv.SyncBuffer
	reg := prometheus.NewRegistry()
	r := NewReconciler(nil, nil, &ReconcilerConfig{Interval: time.Minute, StaleAfter: 3,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil)), Registerer: reg})
	failed := errors.New("provider unreachable")
	lastOK := time.Now().Add(-2 * time.Minute)
	r.ran(nil, failed, &lastOK)
	if got := testutil.ToFloat64(r.metrics.stale); got != 0 || strings.Contains(logs.String(), `"level":"ERROR"`) {
		t.Fatalf("after 2 intervals: stale %v, logs %s; want a warning only", got, logs.String())
	}
	lastOK = time.Now().Add(-4 * time.Minute)
	r.ran(nil, failed, &lastOK)
	if got := testutil.ToFloat64(r.metrics.stale); got != 1 || !strings.Contains(logs.String(), `"level":"ERROR"`) || !strings.Contains(logs.String(), "provider unreachable") {
		t.Fatalf("after 4 intervals: stale %v, logs %s; want stale and an error naming the cause", got, logs.String())
	}
	r.ran(&ReconciliationRun{}, nil, &lastOK)
	if got := testutil.ToFloat64(r.metrics.stale); got != 0 || testutil.ToFloat64(r.metrics.lastSuccess) == 0 {
		t.Fatalf("after a run succeeded: stale %v, last success %v", got, testutil.ToFloat64(r.metrics.lastSuccess))
	}
	if n := testutil.ToFloat64(r.metrics.runs.WithLabelValues("failed")); n != 2 {
		t.Fatalf("%v failed runs counted, want 2", n)
	}
}
