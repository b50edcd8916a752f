//go:build chaos

package main

// The crash tests kill payd at its failpoints, which only builds with the
// chaos tag have.

import (
	"net/http"
	"strings"
	"testing"

	"github.com/idemhq/idem/payd/internal/payments"
	"github.com/idemhq/idem/payd/internal/simulator"
)

// TestWorkerCrashAfterProviderCharged: the worker dies after the provider
// charged and before the outcome is recorded. A restarted payd settles the
// payment as succeeded, with the one charge.
func TestWorkerCrashAfterProviderCharged(t *testing.T) {
	eachDatabase(t, func(t *testing.T, db string) {
		sim, simURL := newSim(t, simulator.Faults{})
		doomed := startPayd(t, paydArgs(db, simURL, "--failpoints", "after-response=1")...)
		r, err := postCharge(apiClient(t, 0), doomed.url, "crash-1", orderBody, 0)
		if err != nil || r.status != http.StatusAccepted {
			t.Fatalf("accept = %v %d", err, r.status)
		}
		doomed.wait() // killed by the failpoint
		if !strings.Contains(doomed.logs.String(), "failpoint after-response") || len(sim.Charges()) != 1 {
			t.Fatalf("want a kill after the provider charged (charges %d):\n%s", len(sim.Charges()), doomed.logs)
		}
		restarted := startPayd(t, paydArgs(db, simURL)...)
		c := awaitFinal(t, restarted.url, r.charge.ID)
		if c.Status != payments.StateSucceeded || len(sim.Charges()) != 1 {
			t.Fatalf("after the restart: %s with %d provider charges, want succeeded with 1", c.Status, len(sim.Charges()))
		}
		verifyPasses(t, db, simURL)
	})
}

// TestLostJobIsImpossible kills payd inside the accept, before it
// commits, and right after it commits. Before: nothing was written, and the
// client's retry creates the payment. After: the payment is due work
// already, a restarted payd charges it, and the client's retry replays it.
// Either way one payment, one charge: there is no separate job to lose.
func TestLostJobIsImpossible(t *testing.T) {
	for _, point := range []string{"in-accept", "after-accept"} {
		t.Run(point, func(t *testing.T) {
			eachDatabase(t, func(t *testing.T, db string) {
				sim, simURL := newSim(t, simulator.Faults{})
				doomed := startPayd(t, paydArgs(db, simURL, "--failpoints", point+"=1", "--role", "api")...)
				if _, err := postCharge(apiClient(t, 0), doomed.url, "lost-1", orderBody, 0); err == nil {
					t.Fatal("payd answered; the failpoint should have killed it first")
				}
				doomed.wait()
				restarted := startPayd(t, paydArgs(db, simURL)...)
				r, err := postCharge(apiClient(t, 0), restarted.url, "lost-1", orderBody, 10)
				if err != nil || r.status != http.StatusOK || r.charge.Status != payments.StateSucceeded {
					t.Fatalf("retry = %v %d %s", err, r.status, r.body)
				}
				if replayed := r.header.Get("Idempotent-Replayed") == "true"; replayed != (point == "after-accept") {
					t.Errorf("retry replayed = %t, want %t: the payment was committed only after-accept", replayed, point == "after-accept")
				}
				if n := len(sim.Charges()); n != 1 {
					t.Fatalf("provider charges = %d, want 1", n)
				}
				verifyPasses(t, db, simURL)
			})
		})
	}
}
