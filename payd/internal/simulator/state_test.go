package simulator_test

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/idemhq/idem/payd/internal/provider"
	"github.com/idemhq/idem/payd/internal/simulator"
)

// statePath is a state file in a new directory.
func statePath(t *testing.T) string {
	return filepath.Join(t.TempDir(), "provider.state")
}

// TestStateSurvivesAReopen: a simulator opened on the state file of one
// that was closed has its charges and refunds as they were, answers each
// key as before, and carries its ids on.
func TestStateSurvivesAReopen(t *testing.T) {
	cfg := &simulator.Config{StateFile: statePath(t)}
	first, a := start(t, cfg)
	ok := as[provider.Charge](t, a.do(http.MethodPost, "/charges", "ok", chargeReq{Amount: 1000, Currency: "eur", Metadata: map[string]string{"payment_id": "pay_1"}}))
	a.charge("declined", 1002)
	a.setFaults(map[string]any{"other_amount_rate": 1})
	other := as[provider.Charge](t, a.charge("other", 500))
	a.setFaults(nil)
	a.refund("ref", ok.ID, 300)
	first.Close()
	wantCharges, wantRefunds := first.Charges(), first.Refunds()
	if len(wantCharges) != 3 || len(wantRefunds) != 1 || other.Amount != 499 {
		t.Fatalf("before the reopen: charges %+v, refunds %+v", wantCharges, wantRefunds)
	}

	second, b := start(t, cfg)
	if got := second.Charges(); !reflect.DeepEqual(got, wantCharges) {
		t.Errorf("charges after the reopen:\n%+v\nwant\n%+v", got, wantCharges)
	}
	if got := second.Refunds(); !reflect.DeepEqual(got, wantRefunds) {
		t.Errorf("refunds after the reopen:\n%+v\nwant\n%+v", got, wantRefunds)
	}
	if r := b.charge("other", 500); r.status != 200 || r.header.Get("Idempotent-Replayed") != "true" || !reflect.DeepEqual(as[provider.Charge](t, r), other) {
		t.Errorf("a retry of the charge made for another amount got %d %s, want %+v replayed", r.status, r.body, other)
	}
	if r := b.charge("declined", 1002); r.status != 402 || r.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("a retry of the declined charge got %d %s, want its 402 replayed", r.status, r.body)
	}
	if r := b.do(http.MethodPost, "/charges", "ok", chargeReq{Amount: 1000, Currency: "usd"}); r.status != 400 || errorCode(r) != "idempotency_mismatch" {
		t.Errorf("the key of a eur charge, asked for usd, got %d %s, want 400 idempotency_mismatch", r.status, r.body)
	}
	if r := b.refund("ref2", ok.ID, 701); r.status != 400 || errorCode(r) != "amount_too_large" {
		t.Errorf("a refund of more than is left got %d %s, want 400 amount_too_large", r.status, r.body)
	}

	next := as[provider.Charge](t, b.charge("new", 100))
	nextRefund := as[provider.Refund](t, b.refund("ref3", ok.ID, 700))
	if next.ID != "ch_000004" || nextRefund.ID != "re_000002" || next.Created.Before(wantCharges[2].Created) {
		t.Errorf("made after the reopen: %s created %v and %s, want ch_000004 created at or after %v, and re_000002",
			next.ID, next.Created, nextRefund.ID, wantCharges[2].Created)
	}
	page := as[struct{ Data []provider.Charge }](t, b.do(http.MethodGet, "/charges?starting_after=ch_000003", "", nil)).Data
	if len(page) != 1 || page[0].ID != next.ID {
		t.Errorf("the page after ch_000003 = %+v, want %s alone", page, next.ID)
	}
}

// TestStateKeepsEventIDsUnique: the events of a reopened simulator carry
// on from the last one sent before, so that a receiver that de-duplicates
// by event id never takes a new event for an old one.
func TestStateKeepsEventIDsUnique(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := simulator.Config{StateFile: statePath(t)}
		first, a, before := startHooks(t, cfg, nil)
		ch := as[provider.Charge](t, a.charge("a", 1000))
		a.charge("b", 1002)
		synctest.Wait()
		first.Close()

		_, b, after := startHooks(t, cfg, nil)
		b.charge("a", 1000) // a replay sends nothing
		b.refund("r", ch.ID, 100)
		b.charge("c", 1000)
		synctest.Wait()
		got := append(ids(before.deliveries()), ids(after.deliveries())...)
		if want := []string{"evt_000001", "evt_000002", "evt_000003", "evt_000004"}; !slices.Equal(got, want) {
			t.Errorf("event ids before and after the reopen = %v, want %v", got, want)
		}
	})
}

// TestStateSurvivesACrash: what a simulator answered is in its state file
// before it answers, so the file as a crash leaves it (copied while the
// simulator runs, never closed) holds every charge and refund made.
func TestStateSurvivesACrash(t *testing.T) {
	path := statePath(t)
	sim, a := start(t, &simulator.Config{StateFile: path})
	ch := as[provider.Charge](t, a.charge("k1", 1000))
	a.refund("r1", ch.ID, 10)
	a.charge("k2", 2000)
	want := sim.Charges()

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	crashed := filepath.Join(t.TempDir(), "crashed.state")
	if err := os.WriteFile(crashed, data, 0o600); err != nil {
		t.Fatal(err)
	}
	after, b := start(t, &simulator.Config{StateFile: crashed})
	if got := after.Charges(); !reflect.DeepEqual(got, want) || len(after.Refunds()) != 1 {
		t.Errorf("after a crash: charges %+v and %d refunds, want %+v and 1", got, len(after.Refunds()), want)
	}
	if next := as[provider.Charge](t, b.charge("k3", 100)); next.ID != "ch_000003" {
		t.Errorf("the next charge is %s, want ch_000003", next.ID)
	}
}

// TestStateFileIsLocked: two simulators never share a state file, which
// would give out the same ids twice; once the first is closed, the file is
// free.
func TestStateFileIsLocked(t *testing.T) {
	cfg := &simulator.Config{StateFile: statePath(t)}
	first := simulator.New(cfg)
	if sim, err := simulator.Open(cfg); !errors.Is(err, simulator.ErrStateFileInUse) || !strings.Contains(err.Error(), cfg.StateFile) {
		if sim != nil {
			sim.Close()
		}
		t.Fatalf("a second Open on the file = %v, want it refused as in use", err)
	}
	first.Close()
	second, err := simulator.Open(cfg)
	if err != nil {
		t.Fatalf("Open after the first was closed: %v", err)
	}
	second.Close()
}

// TestStateKeepsLateExecutions: a late execution is recorded when it
// executes; one still pending at Close is lost, as if its request had
// never arrived, and its key is free at the next open.
func TestStateKeepsLateExecutions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := simulator.Config{StateFile: statePath(t), Faults: simulator.Faults{LateRate: 1, LateMin: time.Second}}
		first, a := startMem(t, &cfg)
		<-sendLost(t.Context(), a, "/charges", "done", chargeReq{Amount: 1000, Currency: "usd"})
		pending := sendLost(t.Context(), a, "/charges", "pending", chargeReq{Amount: 2000, Currency: "usd"})
		synctest.Wait()
		first.Close()
		<-pending

		second, b := startMem(t, &simulator.Config{StateFile: cfg.StateFile})
		if got := second.Charges(); len(got) != 1 || got[0].IdempotencyKey != "done" {
			t.Fatalf("after the reopen: charges %+v, want the one executed", got)
		}
		if r := b.charge("pending", 2000); r.status != 200 || r.header.Get("Idempotent-Replayed") == "true" {
			t.Errorf("the key of the abandoned execution got %d %s, want a new charge", r.status, r.body)
		}
	})
}

// TestStateWriteFailureRefusesTheChange: a charge the state file cannot
// take is not made. The failure that may have left part of it in the file
// is a 500, after which every change is refused, 503, until a reopen.
func TestStateWriteFailureRefusesTheChange(t *testing.T) {
	sim, a := start(t, &simulator.Config{StateFile: statePath(t)})
	a.charge("before", 1000)
	simulator.BreakStateFile(sim)
	if r := a.charge("k1", 1000); r.status != 500 || errorCode(r) != "server_error" {
		t.Errorf("a charge the file could not take got %d %s, want 500 server_error", r.status, r.body)
	}
	if r := a.charge("k2", 1000); r.status != 503 || errorCode(r) != "state_unavailable" {
		t.Errorf("a charge after the file broke got %d %s, want 503 state_unavailable", r.status, r.body)
	}
	if r := a.do(http.MethodGet, "/charges?idempotency_key=k1", "", nil); r.status != 404 || len(sim.Charges()) != 1 {
		t.Errorf("charges %+v, lookup of k1 %d: want only the charge made before", sim.Charges(), r.status)
	}
}
