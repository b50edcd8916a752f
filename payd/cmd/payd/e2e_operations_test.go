package main

import (
	"context"
	"errors"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/idemhq/idem/payd/internal/payments"
	"github.com/idemhq/idem/payd/internal/pgtest"
	"github.com/idemhq/idem/payd/internal/simulator"
	"github.com/jackc/pgx/v5"
)

// TestSIGTERMLetsInFlightWorkFinish stops payd while a provider call is in
// flight: the call finishes, its outcome is recorded, and payd exits 0.
func TestSIGTERMLetsInFlightWorkFinish(t *testing.T) {
	db := filepath.Join(t.TempDir(), "payd.db")
	sim, simURL := newSim(t, simulator.Faults{LatencyMin: 500 * time.Millisecond, LatencyMax: 500 * time.Millisecond})
	p := startPayd(t, paydArgs(db, simURL)...)
	r, err := postCharge(apiClient(t, 0), p.url, "stop-1", orderBody, 0)
	if err != nil || r.status != http.StatusAccepted {
		t.Fatalf("accept = %v %d", err, r.status)
	}
	for sim.Stats().Requests == 0 {
		time.Sleep(time.Millisecond)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.wait(); err != nil {
		t.Fatalf("payd exited with %v after SIGTERM, want 0:\n%s", err, p.logs)
	}
	got, err := openStore(t, db).Get(t.Context(), "acct_dev", r.charge.ID)
	if err != nil || got.State != payments.StateSucceeded || len(sim.Charges()) != 1 {
		t.Fatalf("after a clean stop: %v %+v with %d charges, want succeeded with 1", err, got, len(sim.Charges()))
	}
	verifyPasses(t, db, simURL)
}

// TestVerifyFindsATamperedPosting: payd verify passes on what payd wrote,
// and once a posting is changed behind its back (the append-only trigger
// disabled first), exits non-zero naming the broken transaction.
func TestVerifyFindsATamperedPosting(t *testing.T) {
	db := pgtest.Database(t)
	_, simURL := newSim(t, simulator.Faults{})
	p := startPayd(t, paydArgs(db, simURL)...)
	if r, err := postCharge(apiClient(t, 0), p.url, "tamper-1", orderBody, 10); err != nil || r.charge.Status != payments.StateSucceeded {
		t.Fatalf("charge = %v %+v", err, r)
	}
	verifyPasses(t, db, simURL)

	conn, err := pgx.Connect(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var txn string
	for _, q := range []string{
		`ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_append_only`,
		`UPDATE ledger_entries SET amount = amount - 5 WHERE account = 'provider_clearing' RETURNING txn_id`,
	} {
		if err := conn.QueryRow(t.Context(), q).Scan(&txn); err != nil && !errors.Is(err, pgx.ErrNoRows) {
			t.Fatal(err)
		}
	}
	out, err := payd(t, "verify", "--database-url", smallPool(db), "--provider-url", simURL)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("payd verify after tampering: %v, want exit status 1:\n%s", err, out)
	}
	for _, want := range []string{"journal transaction " + txn + " sums to -5", "FAIL  every balance equals the sum of its postings", "trigger ledger_entries_append_only is missing or disabled"} {
		if !strings.Contains(out, want) {
			t.Errorf("payd verify output lacks %q:\n%s", want, out)
		}
	}
}
