package payments

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/idemhq/idem/internal/testenv"
	"github.com/idemhq/idem/payd/internal/simulator"
)

// TestSettledCountsEveryPath: payd_settled_total counts a settlement
// whoever makes it, by who did: a webhook, reconciliation, or a worker,
// payments and refunds; and each payment settled is timed from its
// acceptance in payd_payment_accept_to_final_seconds.
func TestSettledCountsEveryPath(t *testing.T) {
	eachDatabase(t, func(t *testing.T, s *Store) {
		sim := newSim(t, simulator.Faults{})
		prov := sim.client(t, time.Second)
		m := NewMetrics(prometheus.NewRegistry(), s)
		ctx := t.Context()

		byWebhook := newPaymentOf(t, s, 1999)
		ch, err := prov.Charge(ctx, chargeRequest(byWebhook))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.ApplyEvent(ctx, prov, chargeEvent(t, "evt_1", ch)); err != nil {
			t.Fatal(err)
		}
		byReconciliation := newPaymentOf(t, s, 3000)
		if _, err := prov.Charge(ctx, chargeRequest(byReconciliation)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond) // past the reconciler's grace
		if run, err := NewReconciler(s, prov, &ReconcilerConfig{Window: time.Hour, Grace: time.Millisecond}).RunOnce(ctx); err != nil || run.Fixed != 1 {
			t.Fatalf("reconciliation run %+v (%v), want one fix", run, err)
		}
		cfg := fastConfig()
		cfg.Metrics = m
		startProcessor(t, s, prov, cfg)
		declined := awaitFinal(t, s, newPaymentOf(t, s, 1002).ID)
		r, err := s.CreateRefund(ctx, "acct_test", byWebhook.ID, 500)
		if err != nil {
			t.Fatal(err)
		}
		awaitRefund(t, s, byWebhook.ID, r.ID)
		if declined.State != StateFailed {
			t.Fatalf("the 1002 payment is %s, want failed", declined.State)
		}

		for _, c := range []struct {
			kind, state, by string
		}{
			{"payment", StateSucceeded, "webhook"},
			{"payment", StateSucceeded, "reconciliation"},
			{"payment", StateFailed, "worker"},
			{"refund", StateSucceeded, "worker"},
		} {
			if got := testutil.ToFloat64(m.settled.WithLabelValues(c.kind, c.state, c.by)); got != 1 {
				t.Errorf("payd_settled_total{kind=%q,state=%q,by=%q} = %v, want 1", c.kind, c.state, c.by, got)
			}
		}
		if got := testutil.ToFloat64(m.settled.WithLabelValues("payment", StateSucceeded, "worker")); got != 0 {
			t.Errorf("payd_settled_total of payments the worker succeeded = %v, want 0", got)
		}
		if n := testutil.CollectAndCount(m.acceptToFinal); n != 2 {
			t.Errorf("accept-to-final has %d states, want succeeded and failed", n)
		}
		wantTimed := map[string]uint64{StateSucceeded: 2, StateFailed: 1}
		for state, want := range wantTimed {
			if got := histogramCount(t, m.acceptToFinal, state); got != want {
				t.Errorf("payd_payment_accept_to_final_seconds{state=%q} count = %d, want %d", state, got, want)
			}
		}
	})
}

// histogramCount is the number of observations of h's child with label
// value v.
func histogramCount(t *testing.T, h *prometheus.HistogramVec, v string) uint64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(h)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, metric := range f.GetMetric() {
			if metric.GetLabel()[0].GetValue() == v {
				return metric.GetHistogram().GetSampleCount()
			}
		}
	}
	return 0
}

// TestLeaseLossesByCause: a worker whose outcome is refused is counted by
// why: a webhook that settled the payment first, or one that held it, is
// a harmless race, logged at info; a newer claim after the worker's lease
// expired is a real lease loss, logged as a warning.
func TestLeaseLossesByCause(t *testing.T) {
	eachDatabase(t, func(t *testing.T, s *Store) {
		sim := newSim(t, simulator.Faults{})
		prov := sim.client(t, time.Second)
		cfg := fastConfig()
		cfg.Metrics = NewMetrics(prometheus.NewRegistry(), s)
		proc := NewProcessor(s, prov, cfg) // not started: the test is its worker
		ctx := t.Context()
		logs := &testenv.SyncBuffer{}
		log := slog.New(slog.NewJSONHandler(logs, nil))

		// A webhook settles the payment while the worker's call is out.
		claim, err := s.ClaimPending(ctx, newPaymentOf(t, s, 1999).ID, time.Minute)
		if err != nil || claim == nil {
			t.Fatalf("claim: %v %v", claim, err)
		}
		ch, err := prov.Charge(ctx, chargeRequest(claim.Payment))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.ApplyEvent(ctx, prov, chargeEvent(t, "evt_first", ch)); err != nil {
			t.Fatal(err)
		}
		proc.settle(ctx, proc.paymentTask(claim, time.Now().Add(time.Minute)), chargeOutcome(ch), false, log)

		// Reconciliation holds one: the provider's record is not payd's.
		claim, err = s.ClaimPending(ctx, newPaymentOf(t, s, 1999).ID, time.Minute)
		if err != nil || claim == nil {
			t.Fatalf("claim: %v %v", claim, err)
		}
		hold := &Mismatch{Kind: MismatchAmount, ProviderKey: claim.ProviderKey, AccountID: claim.AccountID, PaymentID: claim.ID, Detail: "test"}
		if held, err := s.HoldByKey(ctx, hold, "reconciliation", "test"); err != nil || !held {
			t.Fatalf("hold: %v %v", held, err)
		}
		proc.settle(ctx, proc.paymentTask(claim, time.Now().Add(time.Minute)), Outcome{State: StateFailed}, false, log)

		// Another worker claims the payment once this one's lease expired.
		stale, err := s.ClaimPending(ctx, newPaymentOf(t, s, 1999).ID, 50*time.Millisecond)
		if err != nil || stale == nil {
			t.Fatalf("claim: %v %v", stale, err)
		}
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			newer, err := s.ClaimDue(ctx, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if newer != nil && newer.ID == stale.ID {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the expired claim was not taken over within 10s")
			}
		}
		proc.settle(ctx, proc.paymentTask(stale, time.Now()), Outcome{State: StateFailed}, false, log)

		for _, cause := range []string{"settled_first", "held", "newer_claim"} {
			if got := testutil.ToFloat64(cfg.Metrics.leaseLosses.WithLabelValues(cause)); got != 1 {
				t.Errorf("payd_lease_losses_total{cause=%q} = %v, want 1", cause, got)
			}
		}
		if got := testutil.ToFloat64(cfg.Metrics.leaseLosses.WithLabelValues("unknown")); got != 0 {
			t.Errorf("payd_lease_losses_total{cause=\"unknown\"} = %v, want 0", got)
		}
		var warnings int
		for line := range strings.Lines(logs.String()) {
			if strings.Contains(line, `"level":"WARN"`) {
				warnings++
				if !strings.Contains(line, "another worker claimed") {
					t.Errorf("a warning for a harmless race: %s", line)
				}
			}
		}
		if warnings != 1 {
			t.Errorf("%d warnings, want 1, for the newer claim:\n%s", warnings, logs)
		}
	})
}
