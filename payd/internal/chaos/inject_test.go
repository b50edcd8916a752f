package chaos

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemhq/idem/payd/internal/simulator"
)

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
