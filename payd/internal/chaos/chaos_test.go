package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/idemhq/idem/payd/internal/provider"
	"github.com/idemhq/idem/payd/internal/simulator"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestPercentiles(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	got := percentiles(ds)
	want := Percentiles{Count: 100, P50: 50, P90: 90, P99: 99, Max: 100}
	if got != want {
		t.Fatalf("percentiles of 1..100ms = %+v, want %+v", got, want)
	}
	if (percentiles(nil) != Percentiles{}) {
		t.Fatal("percentiles of nothing are not zero")
	}
}

// TestOraclesCatchViolations: each oracle fails on the violation it is
// for, with the offender among its examples.
func TestOraclesCatchViolations(t *testing.T) {
	ch := func(id, pid, ref, status string) provider.Charge {
		return provider.Charge{ID: id, Status: status, Amount: 100, Currency: "usd", Metadata: map[string]string{"payment_id": pid, "reference": ref}}
	}
	rec := func(ref string, s ...seen) *record {
		return &record{plan: plan{key: "key-" + ref, reference: ref}, seen: s}
	}
	ev := &evidence{
		charges: []provider.Charge{
			ch("ch_1", "p1", "ok", "succeeded"),
			ch("ch_2", "p2", "double", "succeeded"),
			ch("ch_3", "p3", "double", "succeeded"), // a second payment for the same key
			ch("ch_4", "p4", "lost", "succeeded"),   // p4 says failed
			ch("ch_5", "gone", "orphan", "succeeded"),
			ch("ch_6", "p6", "declined", "failed"), // no money: not a charge to account for
		},
		payments: []paymentRow{
			{ID: "p1", Reference: "ok", State: "succeeded", ProviderChargeID: "ch_1"},
			{ID: "p2", Reference: "double", State: "succeeded", ProviderChargeID: "ch_2"},
			{ID: "p3", Reference: "double", State: "succeeded", ProviderChargeID: "ch_3"},
			{ID: "p4", Reference: "lost", State: "failed"},
			{ID: "p6", Reference: "declined", State: "failed", ProviderChargeID: "ch_6"},
			{ID: "p7", Reference: "phantom", State: "succeeded", ProviderChargeID: "ch_404"},
			{ID: "p8", Reference: "stuck", State: "unknown"},
		},
		records: []*record{
			rec("ok", seen{Status: 200, ID: "p1", State: "succeeded"}),
			rec("lost", seen{Status: 200, ID: "p4", State: "succeeded"}), // told succeeded, ended failed
			rec("double", seen{Status: 202, ID: "p2", State: "pending"}, seen{Status: 202, ID: "p3", State: "pending"}),
		},
	}
	var tr TargetReport
	ev.judge(&tr)
	if tr.DoubleCharges != 1 || tr.LostCharges != 2 || tr.StuckPayments != 1 || tr.Mismatched2xx != 2 || tr.MoneyCharges != 5 {
		t.Fatalf("double %d, lost %d, stuck %d, mismatched %d, money %d; want 1, 2, 1, 2, 5",
			tr.DoubleCharges, tr.LostCharges, tr.StuckPayments, tr.Mismatched2xx, tr.MoneyCharges)
	}
	want := map[string]string{
		"no double charge":                    "double charged 2 times",
		"no lost charge":                      "payment p4 is failed",
		"every succeeded payment was charged": "p7",
		"every 2xx matches the final state":   "key-lost got 200 p4 succeeded",
		"no payment stuck":                    "p8",
	}
	for _, c := range tr.Checks {
		if c.Status != Fail || !strings.Contains(strings.Join(c.Examples, "\n"), want[c.Name]) {
			t.Errorf("check %q = %s %s %v; want a failure naming %q", c.Name, c.Status, c.Detail, c.Examples, want[c.Name])
		}
	}
}

// TestNaiveChargesAgainOnRetry: the naive processor charges once per
// request, so a retry after a timeout, or a double click, charges twice
// and records one of the charges, and the oracles say so.
func TestNaiveChargesAgainOnRetry(t *testing.T) {
	// The provider charges, then holds its answer: the client gives up
	// once the charge exists, as a client timing out does, whatever the
	// machine's speed.
	sim := simulator.New(&simulator.Config{Seed: 1, Faults: simulator.Faults{HangRate: 1, HangFor: time.Minute}})
	srv := httptest.NewServer(sim.Handler())
	defer sim.Close()
	defer srv.Close()
	nv, err := startNaive(1, srv.URL, time.Minute, 0.5, false, false)
	if err != nil {
		t.Fatal(err)
	}
	defer nv.close()
	post := func(ctx context.Context) (int, error) {
		c := &http.Client{}
		defer c.CloseIdleConnections()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, nv.url+"/v1/charges", strings.NewReader(`{"amount":1999,"currency":"usd","reference":"order_1"}`))
		if err != nil {
			return 0, err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		return resp.StatusCode, nil
	}
	ctx, giveUp := context.WithCancel(t.Context())
	go func() {
		defer giveUp()
		for deadline := time.Now().Add(10 * time.Second); len(sim.Charges()) == 0 && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
	}()
	if status, err := post(ctx); err == nil {
		t.Fatalf("the client that gave up got %d", status)
	}
	if n := len(sim.Charges()); n != 1 {
		t.Fatalf("the provider holds %d charges after the first request, want 1", n)
	}
	if err := sim.SetFaults(simulator.Faults{}); err != nil {
		t.Fatal(err)
	}
	status, err := post(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var tr TargetReport
	(&evidence{charges: sim.Charges(), payments: nv.payments()}).judge(&tr)
	if tr.DoubleCharges != 1 || tr.LostCharges != 1 || tr.Payments != 1 {
		t.Fatalf("a timeout and a retry (answered %d): %d payments, %d double and %d lost charges; want 1, 1 and 1",
			status, tr.Payments, tr.DoubleCharges, tr.LostCharges)
	}
}

// TestReportKeys: the JSON report has the keys its readers rely on.
func TestReportKeys(t *testing.T) {
	rep := &Report{Seed: 9, FaultKinds: []Kind{KillRandom}, Naive: &TargetReport{Target: TargetNaive},
		TargetReport: TargetReport{Target: TargetPayd, Faults: map[Kind]int{KillRandom: 2}, HeldPayments: 1, MismatchesExplained: 1,
			Held: []HeldItem{{Subject: "payment", ID: "pay_7", ProviderKey: "pk_7", Amount: 1000, ProviderAmount: 999, Hold: "amount_mismatch", Mismatch: "mm_7"}}},
		Provider: ProviderStats{LateExecutions: 12, InFlightConflicts: 34, OtherAmounts: 1}}
	var buf bytes.Buffer
	if err := rep.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"seed", "requests", "payments", "provider_charges", "double_charges", "lost_charges", "stuck_payments", "faults", "latency_ms", "naive", "passed",
		"held_payments", "held_refunds", "mismatches_explained", "held"} {
		if _, ok := m[k]; !ok {
			t.Errorf("the JSON report has no %q", k)
		}
	}
	prov, _ := m["provider"].(map[string]any)
	for _, k := range []string{"late_executions", "in_flight_conflicts", "other_amounts"} {
		if _, ok := prov[k]; !ok {
			t.Errorf("the JSON report's provider has no %q: %v", k, prov)
		}
	}
	lat, _ := m["latency_ms"].(map[string]any)
	for _, k := range []string{"accept", "settle"} {
		if p, _ := lat[k].(map[string]any); p == nil || p["p99"] == nil {
			t.Errorf("latency_ms has no %s percentiles: %v", k, lat)
		}
	}
	buf.Reset()
	if err := rep.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"seed 9", "double charges", "naive (unsafe baseline)", "kill-random", "held payments (explained)", "open mismatches (explained)",
		"executed 12 requests late", "34 409s for keys in flight", "1 charges or refunds for another amount", "payment pay_7: 1000 asked, the provider 999; mismatch mm_7"} {
		if !strings.Contains(buf.String(), s) {
			t.Errorf("the text report lacks %q:\n%s", s, buf.String())
		}
	}
}

// TestAVacuousRunFails: a payd that acknowledged no charge, or charged
// none, fails the run instead of passing every money check by doing
// nothing; so does a fault that could not be set.
func TestAVacuousRunFails(t *testing.T) {
	for _, c := range []struct {
		acked, charged int
		want           string
	}{
		{acked: 0, charged: 0, want: Fail},
		{acked: 40, charged: 0, want: Fail},
		{acked: 49, charged: 30, want: Fail},
		{acked: 50, charged: 30, want: Pass},
	} {
		tr := &TargetReport{MoneyCharges: c.charged}
		tr.Clients.Charges, tr.Clients.Acknowledged = 100, c.acked
		if got := served(tr); got.Status != c.want {
			t.Errorf("%d of 100 acknowledged, %d charged: %s (%s), want %s", c.acked, c.charged, got.Status, got.Detail, c.want)
		}
	}
	if got := injected(nil); got.Status != Pass {
		t.Errorf("no injection errors: %s", got.Status)
	}
	if got := injected([]string{"set the provider's faults: connection refused"}); got.Status != Fail {
		t.Errorf("an injection error: %s, want %s", got.Status, Fail)
	}
}

// TestFailedStarts: a payd process that never became ready is a violation
// unless database faults were injected, which can stop a start.
func TestFailedStarts(t *testing.T) {
	failures := []string{"replica 1, process 4: exited before it was ready (exit status 1): payd: database unreachable"}
	if got := startedAgain(nil, false); got.Status != Pass {
		t.Errorf("no failed start: %s", got.Status)
	}
	if got := startedAgain(failures, true); got.Status != Pass {
		t.Errorf("a failed start under database faults: %s (%s), want %s", got.Status, got.Detail, Pass)
	}
	if got := startedAgain(failures, false); got.Status != Fail || len(got.Examples) != 1 {
		t.Errorf("a failed start without database faults: %s with %d examples, want %s with the failure", got.Status, len(got.Examples), Fail)
	}
}

// TestExitCode: the status the SIGTERM check judges a stopped payd by: its
// own exit status, or -1 when a signal ended it.
func TestExitCode(t *testing.T) {
	if got := exitCode(nil); got != 0 {
		t.Errorf("exitCode(nil) = %d, want 0", got)
	}
	if got := exitCode(exec.Command("sh", "-c", "exit 3").Run()); got != 3 {
		t.Errorf("exit 3: exitCode = %d, want 3", got)
	}
	if got := exitCode(exec.Command("sh", "-c", "kill -TERM $$").Run()); got != -1 {
		t.Errorf("killed by SIGTERM: exitCode = %d, want -1", got)
	}
}

// TestEveryFailpointFiresFirst: until each failpoint has killed a process,
// new processes arm one that has not, for certain, and no two live
// processes the same one; every other process gets the run's spec, and
// none gets failpoints once the run drains.
func TestEveryFailpointFiresFirst(t *testing.T) {
	spec := "after-claim=0.03,after-send=0.03,after-response=0.03"
	s := &supervisor{fpSpec: spec, failpointKill: map[Kind]int{}, certain: map[string]bool{}}
	next := func(want, wantCertain string) {
		t.Helper()
		args, certain := s.argsFor(0, 0)
		got := ""
		if k := slices.Index(args, "--failpoints"); k >= 0 {
			got = args[k+1]
		}
		if got != want || certain != wantCertain {
			t.Fatalf("--failpoints %q, certain %q; want %q, %q", got, certain, want, wantCertain)
		}
	}
	next("after-claim=1", "after-claim")
	next("after-send=1", "after-send")
	next("after-response=1", "after-response")
	next(spec, "") // each is armed by a live process

	s.disarm("after-send") // its process died before reaching the point
	next("after-send=1", "after-send")

	s.failpointKill[KillAfterClaim] = 1 // it fired
	s.disarm("after-claim")
	s.disarm("after-send")
	next("after-send=1", "after-send")
	next(spec, "")

	s.draining = true
	next("", "")
}
