package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/idemhq/idem/cmd/payd/internal/provider"
	"github.com/idemhq/idem/cmd/payd/internal/simulator"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func scheduleConfig() *Config {
	return &Config{Command: []string{"payd"}, Duration: 10 * time.Minute, Replicas: 3}
}

// TestSameSeedSameSchedule: the schedule is a function of the seed and
// the settings alone.
func TestSameSeedSameSchedule(t *testing.T) {
	a, b := NewSchedule(42, scheduleConfig()), NewSchedule(42, scheduleConfig())
	if !reflect.DeepEqual(a, b) || a.Digest() != b.Digest() {
		t.Fatalf("two schedules of seed 42 differ: %s and %s", a.Digest(), b.Digest())
	}
	if c := NewSchedule(43, scheduleConfig()); c.Digest() == a.Digest() {
		t.Fatalf("seeds 42 and 43 give the same schedule %s", a.Digest())
	}
	if len(a.Events) < 400 {
		t.Fatalf("%d events in 10 minutes at one a second on average, want about 600", len(a.Events))
	}
	kinds := map[Kind]int{}
	for i, e := range a.Events {
		kinds[e.Kind]++
		if e.At >= 10*time.Minute || i > 0 && e.At < a.Events[i-1].At {
			t.Fatalf("event %d at %s: out of order or past the run", i, e.At)
		}
		if info(e.Kind).failpoint != "" {
			t.Fatalf("event %d is a failpoint kill (%s): payd draws those itself", i, e.Kind)
		}
		if e.Kind == Pause && e.For <= 3*time.Second {
			t.Fatalf("a pause of %s does not outlast the 3s lease", e.For)
		}
		if info(e.Kind).process && (e.Replica < 0 || e.Replica >= 3) {
			t.Fatalf("event %d hits replica %d of 3", i, e.Replica)
		}
	}
	for _, k := range Kinds() {
		if info(k).failpoint == "" && kinds[k] == 0 {
			t.Errorf("no %s in 10 minutes of faults", k)
		}
	}
}

// TestScheduleKeepsToItsKinds: disabling kinds leaves only the others,
// and the client plans do not depend on the faults.
func TestScheduleKeepsToItsKinds(t *testing.T) {
	cfg := scheduleConfig()
	cfg.Faults = []Kind{KillRandom, Pause}
	for _, e := range NewSchedule(7, cfg).Events {
		if e.Kind != KillRandom && e.Kind != Pause {
			t.Fatalf("schedule of kill-random and pause holds %s", e.Kind)
		}
	}
	cfg.NoFaults = true
	if n := len(NewSchedule(7, cfg).Events); n != 0 {
		t.Fatalf("NoFaults schedule holds %d events", n)
	}
	c, _ := scheduleConfig().resolve()
	for i := range 100 {
		if a, b := newPlan(7, i, &c), newPlan(7, i, &c); a != b {
			t.Fatalf("plan %d differs between two draws: %+v, %+v", i, a, b)
		}
	}
}

func TestParseFaults(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want []Kind
	}{
		{"all", Kinds()},
		{"none", nil},
		{"failpoints", []Kind{KillAfterClaim, KillAfterSend, KillAfterResponse}},
		{"db,pause", []Kind{Pause, DBReset, DBLatency}},
		{"all,-provider,-webhook,-db", []Kind{KillAfterClaim, KillAfterSend, KillAfterResponse, KillRandom, Pause}},
	} {
		got, err := ParseFaults(tc.spec)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("ParseFaults(%q) = %v, %v; want %v", tc.spec, got, err, tc.want)
		}
	}
	if _, err := ParseFaults("all,meteor"); err == nil || !strings.Contains(err.Error(), "meteor") {
		t.Errorf("ParseFaults of an unknown kind: %v", err)
	}
}

// TestClientDelaysStayBounded: a client that polls or retries for a long
// time waits at most a second, and never not at all.
func TestClientDelaysStayBounded(t *testing.T) {
	for _, n := range []int{0, 1, 5, 40, 64, 1000} {
		if d := pollDelay(n); d < 100*time.Millisecond || d > time.Second {
			t.Errorf("pollDelay(%d) = %s, want within [100ms, 1s]", n, d)
		}
		if d := retryDelay(n); d < 50*time.Millisecond || d > time.Second {
			t.Errorf("retryDelay(%d) = %s, want within [50ms, 1s]", n, d)
		}
	}
}

// TestClientHonorsRetryAfterAndPatience: a client waits at least the
// Retry-After the server sent before it retries, and gives up once its
// patience is spent, or at once when the run's context ends.
func TestClientHonorsRetryAfterAndPatience(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusConflict)
	}))
	defer srv.Close()
	tg := newTarget("payd", false, 1, "key", 1, nil)
	defer tg.close()
	a, err := tg.do(t.Context(), http.MethodPost, srv.URL, "k", []byte("{}"), 0, 5*time.Second)
	if err != nil || a.status != http.StatusConflict || !a.retryable() || a.retryAfter != time.Second {
		t.Fatalf("a 409 with Retry-After: 1 read as %+v, %v", a, err)
	}

	b := newBackoff(stream(1, "test"))
	if !b.next(t.Context()) {
		t.Fatal("no first attempt")
	}
	b.heard(answer{status: http.StatusConflict, retryAfter: 300 * time.Millisecond})
	start := time.Now()
	if !b.next(t.Context()) {
		t.Fatal("no retry within patience")
	}
	if waited := time.Since(start); waited < 300*time.Millisecond {
		t.Errorf("retried %s after a Retry-After of 300ms", waited)
	}
	b.heard(answer{status: http.StatusServiceUnavailable})
	b.deadline = time.Now()
	if b.next(t.Context()) {
		t.Error("retried with patience spent")
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if newBackoff(stream(1, "test")).next(ctx) {
		t.Error("a first attempt after the run's context ended")
	}
}

// TestClientCutShortIsStillWaiting: a client still retrying when the
// run's context ends has not given up: it stays in its phase, and the
// check that every client saw its outcome fails on it.
func TestClientCutShortIsStillWaiting(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	tg := newTarget("payd", false, 1, "key", 1, func(*rand.Rand) (string, bool) { return srv.URL, true })
	defer tg.close()
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	tg.drive(ctx, plan{key: "k", reference: "r", amount: 1000, timeout: time.Second})
	recs := tg.snapshot()
	if len(recs) != 1 {
		t.Fatalf("%d records of one client", len(recs))
	}
	if recs[0].phase != "accept" || len(recs[0].seen) != 0 {
		t.Fatalf("a client cut short while retrying 503s: phase %q, %d 2xx seen; want accept and none", recs[0].phase, len(recs[0].seen))
	}
	if c := clientsDone(recs, nil); c.Status != Fail {
		t.Errorf("clientsDone = %s %s, want a failure naming the waiting client", c.Status, c.Detail)
	}
}

// impatientClient is a client target whose patience for a settlement is
// 300 ms, against a server that accepts charge id as processing and then
// answers every read with state().
func impatientClient(t *testing.T, id string, state func() string) *target {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status, st := http.StatusOK, state()
		if r.Method == http.MethodPost {
			status, st = http.StatusAccepted, "processing"
		}
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"id":%q,"status":%q}`, id, st)
	}))
	t.Cleanup(srv.Close)
	tg := newTarget("payd", false, 1, "key", 1, func(*rand.Rand) (string, bool) { return srv.URL, true })
	t.Cleanup(tg.close)
	tg.settlePatience = 300 * time.Millisecond
	return tg
}

// TestClientStopsFollowingAHeldCharge: a client follows an acknowledged
// charge for settlePatience, then stops, freeing its slot for the
// workload (before this bound, the clients of held payments kept every
// slot of a long run busy). It has not seen its outcome: excused only if
// payd holds the payment, a failure otherwise.
func TestClientStopsFollowingAHeldCharge(t *testing.T) {
	tg := impatientClient(t, "ch_held", func() string { return "processing" })
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	start := time.Now()
	tg.drive(ctx, plan{key: "k", reference: "r", amount: 1000, timeout: time.Second})
	if ctx.Err() != nil || time.Since(start) > 10*time.Second {
		t.Fatalf("the client followed a charge that never settles for %s, want it to stop after its patience", time.Since(start))
	}
	recs := tg.snapshot()
	if len(recs) != 1 || recs[0].phase != "settle" || tg.inFlight.Load() != 0 {
		t.Fatalf("records %d, phase %q, in flight %d; want one client stopped in settle, its slot free", len(recs), recs[0].phase, tg.inFlight.Load())
	}
	if c := clientsDone(recs, nil); c.Status != Fail || len(c.Examples) != 1 || !strings.Contains(c.Examples[0], "stopped following after 300ms") {
		t.Errorf("clientsDone of a payment not held = %s %s %q, want a failure that says the client stopped following", c.Status, c.Detail, c.Examples)
	}
	// The drain subtracts the clients waiting on held payments from those
	// in flight: one that stopped is in neither.
	if n := tg.waitingOn(map[string]bool{"ch_held": true}); n != 0 {
		t.Errorf("waitingOn counts %d clients, want 0: the one waiting on the held payment stopped", n)
	}
	if c := clientsDone(recs, map[string]bool{"ch_held": true}); c.Status != Pass {
		t.Errorf("clientsDone of a held payment = %s %s, want it excused", c.Status, c.Detail)
	}
}

// TestClientComesBackForItsOutcome: a client that stopped following a
// charge reads it again once the drain is over, and is done if payd now
// shows it final; one that payd still shows in progress is not.
func TestClientComesBackForItsOutcome(t *testing.T) {
	var final atomic.Bool
	tg := impatientClient(t, "ch_slow", func() string {
		if final.Load() {
			return "succeeded"
		}
		return "processing"
	})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	tg.drive(ctx, plan{key: "k", reference: "r", amount: 1000, timeout: time.Second})
	if n := tg.comeBack(ctx); n != 0 {
		t.Fatalf("comeBack = %d while payd still shows the charge processing, want 0", n)
	}
	if c := clientsDone(tg.snapshot(), nil); c.Status != Fail {
		t.Fatalf("clientsDone = %s %s while the charge is still processing, want a failure", c.Status, c.Detail)
	}
	final.Store(true)
	if n := tg.comeBack(ctx); n != 1 {
		t.Fatalf("comeBack = %d once payd shows the charge final, want 1", n)
	}
	if c := clientsDone(tg.snapshot(), nil); c.Status != Pass || !strings.Contains(c.Detail, "1 of them stopped following") {
		t.Errorf("clientsDone = %s %s, want a pass that counts the client that came back", c.Status, c.Detail)
	}
}

// TestInjectorFinishesAStepAtTheEnd: a fault set just before the run's
// end is set, even when the simulator answers after the end.
func TestInjectorFinishesAStepAtTheEnd(t *testing.T) {
	var set atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
		set.Add(1)
	}))
	defer srv.Close()
	sched := Schedule{Events: []Event{{Kind: Provider5xx, Rate: 1}}}
	in := newInjector(&http.Client{}, sched, simFaults{}, []string{srv.URL}, nil, nil, nil, nil)
	runCtx, end := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer end()
	in.run(t.Context(), runCtx, time.Now())
	if _, _, _, errs := in.counts(); len(errs) > 0 || set.Load() != 1 {
		t.Fatalf("a step the run's end overtook: %d sets, errors %v; want 1 and none", set.Load(), errs)
	}
}

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

// TestScheduleDrawsTheHostileProvider: the late, in-flight and
// other-amount windows are drawn, with their documented parameters.
func TestScheduleDrawsTheHostileProvider(t *testing.T) {
	cfg := scheduleConfig()
	cfg.Faults = []Kind{ProviderLate, ProviderInFlight, ProviderOtherAmount}
	s := NewSchedule(42, cfg)
	counts := s.Count()
	for _, k := range cfg.Faults {
		if counts[k] < 100 {
			t.Errorf("%d %s in 10 minutes of three kinds, want about 200", counts[k], k)
		}
	}
	for _, e := range s.Events {
		var forMin, forMax time.Duration
		var rateMin, rateMax float64
		switch e.Kind {
		case ProviderLate:
			forMin, forMax, rateMin, rateMax = 2*time.Second, 5*time.Second, 0.3, 0.6
		case ProviderInFlight:
			forMin, forMax, rateMin, rateMax = time.Second, 4*time.Second, 1, 1
		case ProviderOtherAmount:
			forMin, forMax, rateMin, rateMax = time.Second, 3*time.Second, 0.05, 0.15
		}
		if e.For < forMin || e.For > forMax || e.Rate < rateMin || e.Rate > rateMax {
			t.Fatalf("%s for %s at rate %g; want %s–%s at %g–%g", e.Kind, e.For, e.Rate, forMin, forMax, rateMin, rateMax)
		}
	}
}

// TestScheduleOfOtherKindsUnchanged: adding kinds moved none of the
// others' draws: a schedule of the kinds that came before them is the one
// they gave (its digest recorded before the late, in-flight and
// other-amount kinds were added).
func TestScheduleOfOtherKindsUnchanged(t *testing.T) {
	cfg := scheduleConfig()
	cfg.Faults = []Kind{KillRandom, Pause, Provider5xx, Provider429, ProviderDrop, ProviderHang, ProviderReset, ProviderLatency,
		DBReset, DBLatency, WebhookDuplicate, WebhookReorder}
	if got, want := NewSchedule(42, cfg).Digest(), "1de61d205328b62c"; got != want {
		t.Fatalf("schedule of seed 42 without the new kinds: digest %s, want %s", got, want)
	}
}

// TestInjectorComposesTheHostileProvider: open late, in-flight and
// other-amount windows reach the simulators as POST /_faults fields, the
// strongest of each kind, with the run's late range; once they close, the
// fields are gone, so a simulator that predates them takes the rest.
func TestInjectorComposesTheHostileProvider(t *testing.T) {
	var bodies []map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			t.Errorf("POST /_faults body: %v", err)
		}
		bodies = append(bodies, m)
	}))
	defer srv.Close()
	c, err := (&Config{Command: []string{"payd"}, ProviderMaxDelay: 12 * time.Second}).resolve()
	if err != nil {
		t.Fatal(err)
	}
	sched := Schedule{Events: []Event{
		{Kind: ProviderLate, For: 2 * time.Second, Rate: 0.3},
		{Kind: ProviderLate, For: time.Second, Rate: 0.45},
		{Kind: ProviderInFlight, For: time.Second, Rate: 1},
		{Kind: ProviderOtherAmount, For: time.Second, Rate: 0.1},
	}}
	in := newInjector(&http.Client{}, sched, baseFaults(&c), []string{srv.URL}, nil, nil, nil, nil)
	for i := range sched.Events {
		in.apply(t.Context(), step{event: i})
	}
	want := map[string]any{"late_rate": 0.45, "late_min": "500ms", "late_max": "6s", "in_flight_rate": 1.0, "other_amount_rate": 0.1, "hang_for": "3s"}
	last := bodies[len(bodies)-1]
	for k, v := range want {
		if last[k] != v {
			t.Errorf("with every window open, %s = %v; want %v (body %v)", k, last[k], v, last)
		}
	}
	for i := range sched.Events {
		in.apply(t.Context(), step{event: i, end: true})
	}
	last = bodies[len(bodies)-1]
	for _, k := range []string{"late_rate", "late_min", "late_max", "in_flight_rate", "other_amount_rate"} {
		if _, ok := last[k]; ok {
			t.Errorf("with every window closed, the body still sets %s: %v", k, last)
		}
	}
	if _, _, _, errs := in.counts(); len(errs) > 0 {
		t.Fatal(errs)
	}

	// The simulator of this tree takes the faults outside those windows.
	sim := simulator.New(nil)
	defer sim.Close()
	simSrv := httptest.NewServer(sim.Handler())
	defer simSrv.Close()
	if err := setSimFaults(t.Context(), &http.Client{}, simSrv.URL, baseFaults(&c)); err != nil {
		t.Errorf("the run's faults outside every window: %v", err)
	}
}

// TestProviderMaxDelay: late executions stay under half payd's bound and
// under 8s, and a bound the drain cannot outlast is refused.
func TestProviderMaxDelay(t *testing.T) {
	for _, tc := range []struct {
		bound, drain time.Duration
		lateMax      time.Duration
		ok           bool
	}{
		{0, 0, 7500 * time.Millisecond, true}, // the defaults: 15s and 3m
		{30 * time.Second, 0, 8 * time.Second, true},
		{4 * time.Second, 0, 2 * time.Second, true},
		{time.Second, 0, 0, false},
		{time.Minute, time.Minute, 0, false},
	} {
		c, err := (&Config{Command: []string{"payd"}, ProviderMaxDelay: tc.bound, DrainTimeout: tc.drain}).resolve()
		if (err == nil) != tc.ok {
			t.Errorf("provider max delay %s, drain %s: error %v; want ok %t", tc.bound, tc.drain, err, tc.ok)
			continue
		}
		if f := baseFaults(&c); tc.ok && (f.LateMin != 500*time.Millisecond || f.LateMax != tc.lateMax) {
			t.Errorf("provider max delay %s: late %s–%s; want 500ms–%s", c.ProviderMaxDelay, f.LateMin, f.LateMax, tc.lateMax)
		}
	}
}

// TestLateNeedsABound: provider-late is left out, with the reason, when
// payd serve takes no --provider-max-delay; the naive processor alone gets
// it whatever payd has.
func TestLateNeedsABound(t *testing.T) {
	all := setting{postgres: true, webhooks: true, payd: true}
	kinds, skipped := applicable(Kinds(), all)
	if slices.Contains(kinds, ProviderLate) || !slices.Contains(kinds, ProviderOtherAmount) || !slices.Contains(kinds, ProviderInFlight) {
		t.Errorf("without --provider-max-delay: %v; want every kind but provider-late", kinds)
	}
	if len(skipped) != 1 || !strings.Contains(skipped[0], "provider-late") || !strings.Contains(skipped[0], "--provider-max-delay") {
		t.Errorf("without --provider-max-delay, skipped %q; want provider-late, saying why", skipped)
	}
	all.maxDelay = true
	if kinds, skipped := applicable(Kinds(), all); !slices.Equal(kinds, Kinds()) || len(skipped) != 0 {
		t.Errorf("with --provider-max-delay: %v, skipped %q; want every kind", kinds, skipped)
	}
	if kinds, _ := applicable(Kinds(), setting{}); !slices.Contains(kinds, ProviderLate) {
		t.Errorf("the naive processor alone: %v; want provider-late among them", kinds)
	}
}
