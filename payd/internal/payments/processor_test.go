package payments

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/idemhq/idem/payd/internal/provider"
	"github.com/idemhq/idem/payd/internal/simulator"
)

// testSim is the provider simulator behind a real HTTP server, with the
// arrival time of every charge request recorded.
type testSim struct {
	*simulator.Sim
	url string

	mu       sync.Mutex
	arrivals []time.Time
}

func newSim(t *testing.T, faults simulator.Faults) *testSim {
	t.Helper()
	s := &testSim{Sim: simulator.New(&simulator.Config{Seed: 1, Faults: faults})}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/charges" {
			s.mu.Lock()
			s.arrivals = append(s.arrivals, time.Now())
			s.mu.Unlock()
		}
		s.Sim.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(func() { srv.Close(); s.Sim.Close() })
	s.url = srv.URL
	return s
}

func (s *testSim) chargeRequests() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.arrivals...)
}

func (s *testSim) client(t *testing.T, timeout time.Duration) *provider.Client {
	t.Helper()
	c, err := provider.NewClient(s.url, &provider.ClientConfig{Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// fastConfig makes a processor that polls and backs off in milliseconds.
func fastConfig() *ProcessorConfig {
	return &ProcessorConfig{
		Workers:      2,
		Lease:        2 * time.Second,
		PollInterval: 10 * time.Millisecond,
		RetryBase:    20 * time.Millisecond,
		RetryMax:     time.Second,
		UnknownDelay: 50 * time.Millisecond,
	}
}

func startProcessor(t *testing.T, s *Store, prov provider.Provider, cfg *ProcessorConfig) *Processor {
	t.Helper()
	p := NewProcessor(s, prov, cfg)
	p.Start(t.Context())
	t.Cleanup(func() { p.Stop(context.Background()) })
	return p
}

// awaitFinal polls the payment until it is final.
func awaitFinal(t *testing.T, s *Store, id string) *Payment {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		p, err := s.Get(t.Context(), "acct_test", id)
		if err != nil {
			t.Fatal(err)
		}
		if p.Final() {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("payment %s still %s after 20s (attempts %d)", id, p.State, p.Attempts)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func chargesFor(sim *testSim, key string) []provider.Charge {
	var out []provider.Charge
	for _, c := range sim.Charges() {
		if c.IdempotencyKey == key {
			out = append(out, c)
		}
	}
	return out
}

func TestProcessorCharges(t *testing.T) {
	eachDatabase(t, func(t *testing.T, s *Store) {
		sim := newSim(t, simulator.Faults{})
		startProcessor(t, s, sim.client(t, time.Second), fastConfig())
		p := awaitFinal(t, s, newPayment(t, s, "order-1").ID)
		charges := chargesFor(sim, p.ProviderKey)
		if p.State != StateSucceeded || len(charges) != 1 || p.ProviderChargeID != charges[0].ID || p.Attempts != 1 {
			t.Fatalf("payment %s (charge %q, %d attempts) with %d provider charges, want succeeded, its one charge, 1 attempt",
				p.State, p.ProviderChargeID, p.Attempts, len(charges))
		}
		if md := charges[0].Metadata; md["payment_id"] != p.ID || md["reference"] != "order-1" {
			t.Fatalf("charge metadata %v, want the payment id and reference", md)
		}
	})
}

func TestProcessorDecline(t *testing.T) {
	eachDatabase(t, func(t *testing.T, s *Store) {
		sim := newSim(t, simulator.Faults{})
		startProcessor(t, s, sim.client(t, time.Second), fastConfig())
		created, err := s.Create(t.Context(), NewPayment{AccountID: "acct_test", Amount: 1902, Currency: "usd", Reference: "order-1"})
		if err != nil {
			t.Fatal(err)
		}
		p := awaitFinal(t, s, created.ID)
		if p.State != StateFailed || p.FailureCode != "card_declined" || p.Attempts != 1 {
			t.Fatalf("declined payment = %s %q after %d attempts, want failed card_declined after 1", p.State, p.FailureCode, p.Attempts)
		}
		if n := len(sim.chargeRequests()); n != 1 {
			t.Fatalf("provider saw %d charge requests, want 1: a decline is not retried", n)
		}
	})
}

// TestProcessorFlappingProvider: 500s for three attempts, then success:
// one charge, four attempts, and each wait within its jittered bound.
func TestProcessorFlappingProvider(t *testing.T) {
	eachDatabase(t, func(t *testing.T, s *Store) {
		sim := newSim(t, simulator.Faults{ErrorRate: 1})
		cfg := fastConfig()
		startProcessor(t, s, sim.client(t, time.Second), cfg)
		created := newPayment(t, s, "order-1")
		for len(sim.chargeRequests()) < 3 {
			time.Sleep(5 * time.Millisecond)
		}
		if err := sim.SetFaults(simulator.Faults{}); err != nil {
			t.Fatal(err)
		}
		p := awaitFinal(t, s, created.ID)
		if p.State != StateSucceeded || len(chargesFor(sim, p.ProviderKey)) != 1 {
			t.Fatalf("payment %s with %d charges, want succeeded with 1", p.State, len(chargesFor(sim, p.ProviderKey)))
		}
		arrivals := sim.chargeRequests()
		if p.Attempts != len(arrivals) || len(arrivals) < 4 {
			t.Fatalf("%d attempts recorded, %d requests seen, want equal and at least 4", p.Attempts, len(arrivals))
		}
		// Attempt n+1 comes after a wait in [0, base·2^(n-1)], plus the
		// round trip and up to 1.5 poll intervals before a worker looks,
		// plus a stall: with -race and the other packages' tests on two
		// cores, a goroutine waited 140 ms to run. A wait as long as
		// RetryMax still fails.
		slack := 3*cfg.PollInterval/2 + 400*time.Millisecond
		for n := 1; n < len(arrivals); n++ {
			gap := arrivals[n].Sub(arrivals[n-1])
			if bound := cfg.RetryBase<<(n-1) + slack; gap > bound {
				t.Errorf("wait before attempt %d = %s, want at most %s", n+1, gap, bound)
			}
		}
	})
}

// TestProcessorGhostCharge: the provider charges and drops the response.
// The outcome is unknown, never failed, and the retry with the same key
// returns the charge that happened.
func TestProcessorGhostCharge(t *testing.T) {
	eachDatabase(t, func(t *testing.T, s *Store) {
		sim := newSim(t, simulator.Faults{DropAfterChargeRate: 1})
		startProcessor(t, s, sim.client(t, time.Second), fastConfig())
		created := newPayment(t, s, "order-1")
		for len(sim.Charges()) == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		// The first response was lost: the payment must not be failed.
		for deadline := time.Now().Add(time.Second); ; {
			p, _ := s.Get(t.Context(), "acct_test", created.ID)
			if p.State == StateUnknown {
				break
			}
			if p.State == StateFailed || time.Now().After(deadline) {
				t.Fatalf("payment %s after a lost response, want unknown (shown as %s)", p.State, p.Status())
			}
			time.Sleep(5 * time.Millisecond)
		}
		if err := sim.SetFaults(simulator.Faults{}); err != nil {
			t.Fatal(err)
		}
		p := awaitFinal(t, s, created.ID)
		if p.State != StateSucceeded || len(sim.Charges()) != 1 {
			t.Fatalf("payment %s with %d provider charges, want succeeded with 1", p.State, len(sim.Charges()))
		}
	})
}

// TestProcessorStaleWorker: a worker stopped past its lease (here, the
// test holding a claim it lets expire) reports late; the processor has
// re-driven the payment meanwhile, under the same provider key, counting
// the stale claim's lease as a request that may have been sent. The late
// outcome is refused and the payment keeps the newer claim's.
func TestProcessorStaleWorker(t *testing.T) {
	eachDatabase(t, func(t *testing.T, s *Store) {
		sim := newSim(t, simulator.Faults{})
		created := newPayment(t, s, "order-1")
		stale, err := s.ClaimDue(t.Context(), 100*time.Millisecond)
		if err != nil || stale == nil {
			t.Fatalf("claim: %v %v", stale, err)
		}
		cfg := fastConfig()
		cfg.Metrics = NewMetrics(prometheus.NewRegistry(), s)
		startProcessor(t, s, sim.client(t, time.Second), cfg)
		p := awaitFinal(t, s, created.ID)
		if p.State != StateSucceeded || len(sim.Charges()) != 1 || p.Fence != stale.Fence+1 {
			t.Fatalf("payment %s at fence %d with %d charges, want succeeded by the next claim with 1 charge", p.State, p.Fence, len(sim.Charges()))
		}
		if n := testutil.ToFloat64(cfg.Metrics.sweeps); n != 1 {
			t.Fatalf("%v re-drives counted, want 1", n)
		}
		var sentAt, leaseUntil int64
		if err := s.db.QueryRow(t.Context(), s.dialect.sql(`SELECT coalesce(sent_at, 0) FROM payments WHERE id = $1`), p.ID).Scan(&sentAt); err != nil {
			t.Fatal(err)
		}
		if leaseUntil = millis(stale.CreatedAt) + stale.Age.Milliseconds() + 100; sentAt < leaseUntil-50 {
			t.Fatalf("sent_at %d, want at least the stale lease's end, about %d", sentAt, leaseUntil)
		}
		ch := chargesFor(sim, p.ProviderKey)[0]
		if _, err := s.Settle(t.Context(), stale, Outcome{State: StateFailed, ProviderID: ch.ID, FailureCode: "late"}); !errors.Is(err, ErrFenced) {
			t.Fatalf("the stale claim's settle: %v, want ErrFenced", err)
		}
		after, _ := s.Get(t.Context(), "acct_test", created.ID)
		if after.State != StateSucceeded || after.Fence != p.Fence {
			t.Fatalf("after the stale worker answered: %s at fence %d, want unchanged", after.State, after.Fence)
		}
	})
}

// TestCallsEndWithTheLease: a provider that holds its answer longer than
// the worker's lease, with a provider timeout longer still: the call is
// cut when the lease ends, so no request of the worker's outlives its
// claim, and its outcome is recorded before the provider would have
// answered. A later claim finds the one charge.
func TestCallsEndWithTheLease(t *testing.T) {
	eachDatabase(t, func(t *testing.T, s *Store) {
		const hang = 3 * time.Second
		sim := newSim(t, simulator.Faults{HangRate: 1, HangFor: hang})
		cfg := fastConfig()
		cfg.Workers, cfg.Lease, cfg.UnknownDelay = 1, 300*time.Millisecond, time.Hour
		startProcessor(t, s, sim.client(t, 10*time.Second), cfg)
		created := newPayment(t, s, "order-1")
		for deadline := time.Now().Add(10 * time.Second); ; {
			p, err := s.Get(t.Context(), "acct_test", created.ID)
			if err != nil {
				t.Fatal(err)
			}
			if p.State == StateUnknown {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("payment %s after 10s, want unknown once its lease cut the call", p.State)
			}
			time.Sleep(5 * time.Millisecond)
		}
		arrivals := sim.chargeRequests()
		if len(arrivals) != 1 || time.Since(arrivals[0]) >= hang {
			t.Fatalf("%d charge requests, the outcome recorded %s after the first; want 1, recorded before the provider's answer at %s",
				len(arrivals), time.Since(arrivals[0]), hang)
		}
		if len(sim.Charges()) != 1 {
			t.Fatalf("%d charges, want the one the provider made", len(sim.Charges()))
		}
	})
}

// TestProcessorLooksUpBeforeFailing: with the provider refusing every
// request before acting (429s, lookups too), attempts run out and the
// payment waits on a lookup; it is failed only once the provider confirms
// it has no charge.
func TestProcessorLooksUpBeforeFailing(t *testing.T) {
	eachDatabase(t, func(t *testing.T, s *Store) {
		sim := newSim(t, simulator.Faults{RateLimitRate: 1})
		cfg := fastConfig()
		cfg.MaxAttempts = 2
		startProcessor(t, s, sim.client(t, time.Second), cfg)
		created := newPayment(t, s, "order-1")
		time.Sleep(500 * time.Millisecond)
		p, _ := s.Get(t.Context(), "acct_test", created.ID)
		if p.Final() {
			t.Fatalf("payment %s while the provider cannot be asked, want still open", p.State)
		}
		if err := sim.SetFaults(simulator.Faults{}); err != nil {
			t.Fatal(err)
		}
		p = awaitFinal(t, s, created.ID)
		if p.State != StateFailed || p.FailureCode != "provider_unavailable" || len(sim.Charges()) != 0 {
			t.Fatalf("payment %s %q with %d charges, want failed provider_unavailable and no charge", p.State, p.FailureCode, len(sim.Charges()))
		}
	})
}

// TestTwoReplicasOneBacklog: two processes' processors, each with its own
// pool, on one database: every payment is charged exactly once.
func TestTwoReplicasOneBacklog(t *testing.T) {
	eachURL(t, func(t *testing.T, url string) {
		s := openStore(t, url)
		const n = 100
		var ids []string
		for i := range n {
			ids = append(ids, newPayment(t, s, fmt.Sprint("order-", i)).ID)
		}
		sim := newSim(t, simulator.Faults{})
		other := openStore(t, url)
		startProcessor(t, s, sim.client(t, time.Second), fastConfig())
		startProcessor(t, other, sim.client(t, time.Second), fastConfig())
		for _, id := range ids {
			if p := awaitFinal(t, s, id); p.State != StateSucceeded {
				t.Fatalf("payment %s %s, want succeeded", id, p.State)
			}
		}
		perKey := map[string]int{}
		for _, c := range sim.Charges() {
			perKey[c.IdempotencyKey]++
		}
		for key, count := range perKey {
			if count != 1 {
				t.Errorf("provider key %s charged %d times", key, count)
			}
		}
		if len(perKey) != n {
			t.Fatalf("%d provider keys charged, want %d", len(perKey), n)
		}
	})
}

// TestBacklogDrainsWithoutPolling: a worker that finds more work due keeps
// claiming, so one wake-up drains a backlog even when polls are an hour
// apart; and a refund created meanwhile is found on NotifyRefund, not on a
// poll.
func TestBacklogDrainsWithoutPolling(t *testing.T) {
	eachDatabase(t, func(t *testing.T, s *Store) {
		sim := newSim(t, simulator.Faults{})
		const backlog = 20
		var ps []*Payment
		for i := range backlog {
			ps = append(ps, newPayment(t, s, fmt.Sprint("order-", i)))
		}
		cfg := fastConfig()
		cfg.PollInterval = time.Hour
		p := startProcessor(t, s, sim.client(t, 5*time.Second), cfg)
		// Each worker looks once when it starts; the rest must follow from
		// claims that saw more work due.
		for _, pay := range ps {
			if got := awaitFinal(t, s, pay.ID); got.State != StateSucceeded {
				t.Fatalf("payment %s = %s, want succeeded", pay.ID, got.State)
			}
		}
		ref, err := s.CreateRefund(t.Context(), "acct_test", ps[0].ID, 500)
		if err != nil {
			t.Fatal(err)
		}
		p.NotifyRefund()
		if got := awaitRefund(t, s, ps[0].ID, ref.ID); got.State != StateSucceeded {
			t.Fatalf("refund = %s, want succeeded", got.State)
		}
	})
}

// TestPollsAreNotStarvedByHandOffs: a steady stream of hand-offs must not
// keep a worker from its polls, which find everything else that is due (a
// retry, an expired lease, a payment whose hand-off was lost).
func TestPollsAreNotStarvedByHandOffs(t *testing.T) {
	eachDatabase(t, func(t *testing.T, s *Store) {
		sim := newSim(t, simulator.Faults{})
		cfg := fastConfig()
		cfg.Workers = 1
		cfg.PollInterval = 100 * time.Millisecond
		p := startProcessor(t, s, sim.client(t, 5*time.Second), cfg)
		stop := make(chan struct{})
		defer close(stop)
		handed := make(chan string, 1000)
		go func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
				np, err := s.Create(context.Background(), NewPayment{AccountID: "acct_test", Amount: 100, Currency: "usd",
					Reference: fmt.Sprint("handed-", i), Reserve: DispatchReserve})
				if err != nil {
					return
				}
				p.Dispatch(np.ID)
				handed <- np.ID
			}
		}()
		// Hand-offs flowing well past the worker's first poll: the 40th,
		// 200ms in, settled.
		for range 39 {
			<-handed
		}
		awaitFinal(t, s, <-handed)
		polled := newPayment(t, s, "order-polled") // due, never handed off
		awaitFinal(t, s, polled.ID)                // fails if polls are starved
	})
}

// TestRefundsAreNotStarvedByPayments: a backlog of due payments that keeps
// the one worker busy, and a refund created behind it. The worker takes
// the refund at its next poll, with most of the backlog still to do;
// before, a refund was looked for only once no payment was due, and
// refunds waited a minute and more behind a steady stream of charges.
func TestRefundsAreNotStarvedByPayments(t *testing.T) {
	eachDatabase(t, func(t *testing.T, s *Store) {
		sim := newSim(t, simulator.Faults{LatencyMin: 20 * time.Millisecond, LatencyMax: 20 * time.Millisecond})
		cfg := fastConfig()
		cfg.Workers, cfg.PollInterval = 1, 50*time.Millisecond
		startProcessor(t, s, sim.client(t, 5*time.Second), cfg)
		charged := awaitFinal(t, s, newPayment(t, s, "order-to-refund").ID)
		const backlog = 150
		for i := range backlog {
			newPayment(t, s, fmt.Sprint("backlog-", i))
		}
		r, err := s.CreateRefund(t.Context(), "acct_test", charged.ID, 100)
		if err != nil {
			t.Fatal(err)
		}
		awaitRefund(t, s, charged.ID, r.ID)
		open, err := s.Backlog(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if open < backlog/2 {
			t.Fatalf("the refund settled with %d of %d payments still open, want it taken long before the backlog is done", open, backlog)
		}
	})
}
