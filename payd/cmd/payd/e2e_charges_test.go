package main

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/idemhq/idem/payd/internal/payments"
	"github.com/idemhq/idem/payd/internal/pgtest"
	"github.com/idemhq/idem/payd/internal/simulator"
)

// TestGhostCharge: the client gives up after 20ms while the provider takes
// 100ms, and retries with the same key: one charge, and the retry sees it
// succeed.
func TestGhostCharge(t *testing.T) {
	eachDatabase(t, func(t *testing.T, db string) {
		sim, simURL := newSim(t, simulator.Faults{LatencyMin: 100 * time.Millisecond, LatencyMax: 100 * time.Millisecond})
		p := startPayd(t, paydArgs(db, simURL)...)
		impatient := apiClient(t, 20*time.Millisecond)
		if _, err := postCharge(impatient, p.url, "ghost-1", orderBody, 5); err == nil {
			t.Fatal("the impatient client got an answer within 20ms; the test needs it to time out")
		}
		r, err := postCharge(apiClient(t, 0), p.url, "ghost-1", orderBody, 5)
		if err != nil {
			t.Fatal(err)
		}
		// Whether the abandoned request's accept committed is a race with
		// the client's timeout: the retry is a replay if it did, the first
		// accept if it did not. Either way there is one charge.
		if r.status != http.StatusOK || r.charge.Status != payments.StateSucceeded {
			t.Fatalf("retry = %d %s, want 200 succeeded", r.status, r.charge.Status)
		}
		if n := len(sim.Charges()); n != 1 {
			t.Fatalf("provider charges = %d, want 1", n)
		}
		verifyPasses(t, db, simURL)
	})
}

// TestDoubleClick: 50 concurrent identical requests make one payment and
// one charge; every answer is the original or a replay of it.
func TestDoubleClick(t *testing.T) {
	eachDatabase(t, func(t *testing.T, db string) {
		sim, simURL := newSim(t, simulator.Faults{})
		p := startPayd(t, paydArgs(db, simURL)...)
		const clicks = 50
		var (
			wg        sync.WaitGroup
			mu        sync.Mutex
			ids       = map[string]int{}
			originals int
		)
		for range clicks {
			wg.Go(func() {
				r, err := postCharge(apiClient(t, 0), p.url, "click-1", orderBody, 0)
				if err != nil || r.status != http.StatusAccepted {
					t.Errorf("click: %v %d %s", err, r.status, r.body)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				ids[r.charge.ID]++
				if r.header.Get("Idempotent-Replayed") != "true" {
					originals++
				}
			})
		}
		wg.Wait()
		if len(ids) != 1 || originals != 1 {
			t.Fatalf("%d clicks got %d charge ids and %d originals, want 1 and 1: %v", clicks, len(ids), originals, ids)
		}
		for id := range ids {
			awaitFinal(t, p.url, id)
		}
		if n := len(sim.Charges()); n != 1 {
			t.Fatalf("provider charges = %d, want 1", n)
		}
		verifyPasses(t, db, simURL)
	})
}

// TestDecline: a declined card ends failed with its code, after one
// attempt.
func TestDecline(t *testing.T) {
	eachDatabase(t, func(t *testing.T, db string) {
		_, simURL := newSim(t, simulator.Faults{})
		p := startPayd(t, paydArgs(db, simURL)...)
		r, err := postCharge(apiClient(t, 0), p.url, "decline-1", `{"amount":1902,"currency":"usd","reference":"order_9"}`, 10)
		if err != nil {
			t.Fatal(err)
		}
		if r.status != http.StatusOK || r.charge.Status != payments.StateFailed || r.charge.FailureCode == nil || *r.charge.FailureCode != "card_declined" || r.charge.Attempts != 1 {
			t.Fatalf("declined charge = %d %+v, want 200 failed card_declined after 1 attempt", r.status, r.charge)
		}
		verifyPasses(t, db, simURL)
	})
}

// TestFlappingProvider: 500s for three attempts, then success: one charge.
func TestFlappingProvider(t *testing.T) {
	eachDatabase(t, func(t *testing.T, db string) {
		sim, simURL := newSim(t, simulator.Faults{ErrorRate: 1})
		p := startPayd(t, paydArgs(db, simURL)...)
		r, err := postCharge(apiClient(t, 0), p.url, "flap-1", orderBody, 0)
		if err != nil || r.status != http.StatusAccepted {
			t.Fatalf("accept = %v %d", err, r.status)
		}
		for sim.Stats().Requests < 3 {
			time.Sleep(10 * time.Millisecond)
		}
		if err := sim.SetFaults(simulator.Faults{}); err != nil {
			t.Fatal(err)
		}
		c := awaitFinal(t, p.url, r.charge.ID)
		if c.Status != payments.StateSucceeded || c.Attempts < 4 || len(sim.Charges()) != 1 {
			t.Fatalf("charge %s after %d attempts with %d provider charges, want succeeded after 4 or more, 1 charge", c.Status, c.Attempts, len(sim.Charges()))
		}
		verifyPasses(t, db, simURL)
	})
}

// TestStaleWorkerPausedPastItsLease stops a payd worker (SIGSTOP) while
// its provider call is in flight, lets another worker take the payment
// over and settle it, then resumes the first: its outcome is refused, and
// the payment keeps the one charge.
func TestStaleWorkerPausedPastItsLease(t *testing.T) {
	eachDatabase(t, func(t *testing.T, db string) {
		sim, simURL := newSim(t, simulator.Faults{LatencyMin: 300 * time.Millisecond, LatencyMax: 300 * time.Millisecond})
		stale := startPayd(t, paydArgs(db, simURL, "--workers", "1")...)
		r, err := postCharge(apiClient(t, 0), stale.url, "stale-1", orderBody, 0)
		if err != nil || r.status != http.StatusAccepted {
			t.Fatalf("accept = %v %d", err, r.status)
		}
		for sim.Stats().Requests == 0 {
			time.Sleep(time.Millisecond)
		}
		stale.cmd.Process.Signal(syscall.SIGSTOP) // paused mid-call
		fresh := startPayd(t, paydArgs(db, simURL, "--role", "worker")...)
		_ = fresh
		store := openStore(t, db)
		var p *payments.Payment
		for deadline := time.Now().Add(30 * time.Second); ; {
			p, err = store.Get(t.Context(), "acct_dev", r.charge.ID)
			if err != nil {
				t.Fatal(err)
			}
			if p.Final() {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("not settled by the second worker: %s", p.State)
			}
			time.Sleep(20 * time.Millisecond)
		}
		stale.cmd.Process.Signal(syscall.SIGCONT)
		for deadline := time.Now().Add(10 * time.Second); !strings.Contains(stale.logs.String(), "lease lost"); {
			if time.Now().After(deadline) {
				t.Fatalf("the resumed worker never reported its lease lost:\n%s", stale.logs)
			}
			time.Sleep(20 * time.Millisecond)
		}
		after, _ := store.Get(t.Context(), "acct_dev", r.charge.ID)
		if after.State != payments.StateSucceeded || after.Fence != p.Fence || p.Fence < 2 || len(sim.Charges()) != 1 {
			t.Fatalf("after the stale worker resumed: %s at fence %d (was %d) with %d charges, want succeeded, unchanged, fence ≥ 2, 1 charge",
				after.State, after.Fence, p.Fence, len(sim.Charges()))
		}
		verifyPasses(t, db, simURL)
	})
}

// TestTwoReplicas runs two payd processes on one PostgreSQL database and
// sends charges to both: every payment is charged exactly once.
func TestTwoReplicas(t *testing.T) {
	db := pgtest.Database(t)
	sim, simURL := newSim(t, simulator.Faults{LatencyMax: 5 * time.Millisecond}) // amounts ending 02 or 03 would be declined
	replicas := []*proc{startPayd(t, paydArgs(db, simURL)...), startPayd(t, paydArgs(db, simURL, "--migrate=false")...)}
	const n = 200
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		ids []string
	)
	for i := range n {
		wg.Go(func() {
			r, err := postCharge(apiClient(t, 0), replicas[i%2].url, fmt.Sprint("two-", i), fmt.Sprintf(`{"amount":%d,"currency":"eur","reference":"order_%d"}`, 1000+10*i, i), 0)
			if err != nil || r.status != http.StatusAccepted {
				t.Errorf("accept %d: %v %d %s", i, err, r.status, r.body)
				return
			}
			mu.Lock()
			ids = append(ids, r.charge.ID)
			mu.Unlock()
		})
	}
	wg.Wait()
	for _, id := range ids {
		if c := awaitFinal(t, replicas[0].url, id); c.Status != payments.StateSucceeded {
			t.Fatalf("charge %s %s", id, c.Status)
		}
	}
	perKey := charges(sim)
	for key, cs := range perKey {
		if len(cs) != 1 {
			t.Errorf("provider key %s charged %d times", key, len(cs))
		}
	}
	if len(perKey) != n {
		t.Fatalf("%d provider keys charged, want %d", len(perKey), n)
	}
	verifyPasses(t, db, simURL)
}
