package idemprom_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/idemprom"
	"github.com/idemhq/idem/memstore"
	"github.com/idemhq/idem/observe"
	"github.com/idemhq/idem/store"
)

// newEngine returns an engine on s that reports to reg.
func newEngine(t *testing.T, s store.Store, reg prometheus.Registerer) *idem.Engine {
	t.Helper()
	observer, err := idemprom.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	e, err := idem.New(s, &idem.Config{Observer: observer, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// failingComplete is a memstore that cannot record outcomes: every call
// through it ends in observe.NotRecorded.
type failingComplete struct{ store.Store }

func (failingComplete) Complete(context.Context, store.Lease, []byte) error {
	return errors.New("disk full")
}

// counts are one engine's counters: its labels (such as `engine="ok",`)
// and the counts of three outcomes; every other outcome is 0.
type counts struct {
	labels                          string
	executed, replayed, notRecorded int
}

// exposition is the text exposition of the counters of cs, in label order.
func exposition(cs ...counts) string {
	var b strings.Builder
	b.WriteString("# HELP idem_events_total Events of idem calls, by outcome.\n# TYPE idem_events_total counter\n")
	for _, c := range cs {
		for _, outcome := range []string{"executed", "in_flight", "lease_lost", "mismatch", "not_recorded", "released", "replayed", "store_error", "takeover", "waited"} {
			n := map[string]int{"executed": c.executed, "replayed": c.replayed, "not_recorded": c.notRecorded}[outcome]
			fmt.Fprintf(&b, "idem_events_total{%soutcome=%q} %d\n", c.labels, outcome, n)
		}
	}
	b.WriteString("# HELP idem_not_recorded_total Outcomes lost after fn ran: the effect happened and the record is missing.\n# TYPE idem_not_recorded_total counter\n")
	for _, c := range cs {
		fmt.Fprintf(&b, "idem_not_recorded_total{%s} %d\n", strings.TrimSuffix(c.labels, ","), c.notRecorded)
	}
	return b.String()
}

func TestCountsEventsAndDurations(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewRegistry()
		slow := func(context.Context) ([]byte, error) {
			time.Sleep(50 * time.Millisecond)
			return nil, nil
		}
		e := newEngine(t, memstore.New(), prometheus.WrapRegistererWith(prometheus.Labels{"engine": "ok"}, reg))
		for range 2 {
			if _, err := e.Run(t.Context(), "order-1234", slow, nil); err != nil {
				t.Fatal(err)
			}
		}
		broken := newEngine(t, failingComplete{memstore.New()}, prometheus.WrapRegistererWith(prometheus.Labels{"engine": "broken"}, reg))
		if _, err := broken.Run(t.Context(), "order-1234", slow, nil); !errors.Is(err, idem.ErrNotRecorded) {
			t.Fatalf("got %v, want ErrNotRecorded", err)
		}

		want := exposition(counts{labels: `engine="broken",`, notRecorded: 1}, counts{labels: `engine="ok",`, executed: 1, replayed: 1})
		if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "idem_events_total", "idem_not_recorded_total"); err != nil {
			t.Error(err)
		}

		// The calls that ran fn have a duration, 50ms, in the 0.05 bucket;
		// the replay has none.
		h := histograms(t, reg)
		if len(h) != 2 {
			t.Fatalf("idem_duration_seconds has %d series, want 2 (executed, not recorded)", len(h))
		}
		for _, series := range []string{`engine="ok",outcome="executed"`, `engine="broken",outcome="not_recorded"`} {
			got := h[series]
			if got.GetSampleCount() != 1 || got.GetSampleSum() != 0.05 {
				t.Errorf("%s: %d samples summing to %v, want 1 of 0.05", series, got.GetSampleCount(), got.GetSampleSum())
			}
			for _, b := range got.GetBucket() {
				want := uint64(0)
				if b.GetUpperBound() >= 0.05 {
					want = 1
				}
				if b.GetCumulativeCount() != want {
					t.Errorf("%s: bucket le=%v holds %d, want %d", series, b.GetUpperBound(), b.GetCumulativeCount(), want)
				}
			}
		}
	})
}

// histograms returns the series of idem_duration_seconds in reg, by their
// labels as `name="value",...` in name order.
func histograms(t *testing.T, reg *prometheus.Registry) map[string]*dto.Histogram {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*dto.Histogram{}
	for _, mf := range mfs {
		if mf.GetName() != "idem_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var pairs []string
			for _, lp := range m.GetLabel() {
				pairs = append(pairs, lp.GetName()+`="`+lp.GetValue()+`"`)
			}
			got[strings.Join(pairs, ",")] = m.GetHistogram()
		}
	}
	return got
}

func TestSeriesStartAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := idemprom.New(reg); err != nil {
		t.Fatal(err)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(exposition(counts{})), "idem_events_total", "idem_not_recorded_total"); err != nil {
		t.Error(err)
	}
}

func TestRegister(t *testing.T) {
	t.Run("nil", func(t *testing.T) {
		if _, err := idemprom.New(nil); err == nil {
			t.Error("New(nil) succeeded, want an error")
		}
	})
	t.Run("twice", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		if _, err := idemprom.New(reg); err != nil {
			t.Fatal(err)
		}
		var are prometheus.AlreadyRegisteredError
		if _, err := idemprom.New(reg); !errors.As(err, &are) {
			t.Errorf("second New: got %v, want AlreadyRegisteredError", err)
		}
	})
	t.Run("wrapped", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		for _, store := range []string{"postgres", "redis"} {
			if _, err := idemprom.New(prometheus.WrapRegistererWith(prometheus.Labels{"store": store}, reg)); err != nil {
				t.Errorf("New with store=%s: %v", store, err)
			}
		}
	})
	t.Run("all or none", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		// The registry remembers a name's help and labels after Unregister,
		// so the clash has the same ones.
		clash := prometheus.NewCounter(prometheus.CounterOpts{
			Name: "idem_not_recorded_total",
			Help: "Outcomes lost after fn ran: the effect happened and the record is missing.",
		})
		reg.MustRegister(clash)
		if _, err := idemprom.New(reg); err == nil {
			t.Fatal("New succeeded over a clashing collector, want an error")
		}
		reg.Unregister(clash)
		if _, err := idemprom.New(reg); err != nil {
			t.Errorf("New after the clash was removed: %v, want a clean registry", err)
		}
	})
}

func TestConcurrentCalls(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEngine(t, memstore.New(), reg)
	ok := func(context.Context) ([]byte, error) { return nil, nil }
	const keys, callers = 10, 8
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for k := range keys {
				if _, err := e.Run(t.Context(), fmt.Sprint("order-", k), ok, nil); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if mf.GetName() == "idem_events_total" && m.GetLabel()[0].GetValue() == "executed" {
				if got := m.GetCounter().GetValue(); got != keys {
					t.Errorf("idem_events_total{outcome=executed} = %v, want %d", got, keys)
				}
				return
			}
		}
	}
	t.Error("no idem_events_total{outcome=executed}")
}

// TestEveryKind calls the observer with one event of each kind, as the
// engine reports it, and checks what doc.go promises of it: one count in
// idem_events_total for its outcome and none for the others; one in
// idem_not_recorded_total for not_recorded only; a sample in
// idem_duration_seconds exactly for the kinds with a duration (executed,
// waited, lease_lost, not_recorded) and none for the others.
func TestEveryKind(t *testing.T) {
	const key = "default/2f1e" // a store key: namespace and hash
	fnErr := errors.New("charge declined for order-1234")
	cases := []struct {
		ev          observe.Event
		hasDuration bool
	}{
		{observe.Event{Kind: observe.Executed, Key: key, Fence: 7, Duration: 50 * time.Millisecond, Err: fnErr}, true},
		{observe.Event{Kind: observe.Replayed, Key: key}, false},
		{observe.Event{Kind: observe.Waited, Key: key, Fence: 7, Duration: 2 * time.Second}, true},
		{observe.Event{Kind: observe.Takeover, Key: key, Fence: 8}, false},
		{observe.Event{Kind: observe.LeaseLost, Key: key, Fence: 7, Duration: 30 * time.Second, Err: fnErr}, true},
		{observe.Event{Kind: observe.Released, Key: key, Fence: 7, Err: context.Canceled}, false},
		{observe.Event{Kind: observe.Mismatch, Key: key}, false},
		{observe.Event{Kind: observe.InFlight, Key: key, Fence: 7}, false},
		{observe.Event{Kind: observe.StoreError, Key: key,
			Err: &idem.StoreError{Op: "claim", Key: key, Err: errors.New("connection refused")}}, false},
		{observe.Event{Kind: observe.NotRecorded, Key: key, Fence: 7, Duration: 100 * time.Millisecond,
			Err: &idem.StoreError{Op: "complete", Key: key, Executed: true, Err: errors.New("disk full")}}, true},
	}
	if got, want := len(cases), int(observe.NotRecorded); got != want {
		t.Fatalf("%d cases, want one per kind (%d)", got, want)
	}
	for _, tc := range cases {
		outcome := tc.ev.Kind.String()
		t.Run(outcome, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			observer, err := idemprom.New(reg)
			if err != nil {
				t.Fatal(err)
			}
			observer(t.Context(), tc.ev)

			var c counts
			switch tc.ev.Kind {
			case observe.Executed:
				c.executed = 1
			case observe.Replayed:
				c.replayed = 1
			case observe.NotRecorded:
				c.notRecorded = 1
			}
			want := exposition(c)
			if c == (counts{}) {
				// exposition counts three outcomes; this kind is another.
				want = strings.Replace(want, fmt.Sprintf("outcome=%q} 0", outcome), fmt.Sprintf("outcome=%q} 1", outcome), 1)
			}
			if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "idem_events_total", "idem_not_recorded_total"); err != nil {
				t.Error(err)
			}

			h := histograms(t, reg)
			if !tc.hasDuration {
				if len(h) != 0 {
					t.Errorf("idem_duration_seconds has series %v, want none", seriesOf(h))
				}
				return
			}
			series := fmt.Sprintf("outcome=%q", outcome)
			got, found := h[series]
			if len(h) != 1 || !found {
				t.Fatalf("idem_duration_seconds has series %v, want %s only", seriesOf(h), series)
			}
			sec := tc.ev.Duration.Seconds()
			if got.GetSampleCount() != 1 || got.GetSampleSum() != sec {
				t.Errorf("%s: %d samples summing to %v, want 1 of %v", series, got.GetSampleCount(), got.GetSampleSum(), sec)
			}
			for _, b := range got.GetBucket() {
				want := uint64(0)
				if b.GetUpperBound() >= sec {
					want = 1
				}
				if b.GetCumulativeCount() != want {
					t.Errorf("%s: bucket le=%v holds %d, want %d", series, b.GetUpperBound(), b.GetCumulativeCount(), want)
				}
			}
		})
	}
}

// seriesOf returns the series of h, for a message.
func seriesOf(h map[string]*dto.Histogram) []string {
	var ks []string
	for k := range h {
		ks = append(ks, k)
	}
	return ks
}
