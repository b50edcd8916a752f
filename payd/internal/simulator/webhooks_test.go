package simulator_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/idemhq/idem/payd/internal/provider"
	"github.com/idemhq/idem/payd/internal/simulator"
	"github.com/idemhq/idem/webhook"
)

const hookSecret = "whsec_test"

// receiver is a webhook endpoint that verifies and records deliveries.
type receiver struct {
	verifier webhook.Verifier
	// status answers the nth delivery (from 0); nil answers 204.
	status func(n int) int

	mu  sync.Mutex
	got []delivery
}

type delivery struct {
	at    time.Time
	body  string
	event provider.Event
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		panic(err)
	}
	if err := rc.verifier.Verify(r.Header.Get(webhook.DefaultHeader), body); err != nil {
		panic(fmt.Sprintf("unverified delivery %s: %v", body, err)) // fails the bubble loudly
	}
	var ev provider.Event
	if err := json.Unmarshal(body, &ev); err != nil {
		panic(err)
	}
	rc.mu.Lock()
	n := len(rc.got)
	rc.got = append(rc.got, delivery{at: time.Now(), body: string(body), event: ev})
	rc.mu.Unlock()
	status := http.StatusNoContent
	if rc.status != nil {
		status = rc.status(n)
	}
	w.WriteHeader(status)
}

func (rc *receiver) deliveries() []delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.got)
}

// startHooks serves a simulator that sends webhooks to a new receiver,
// both on an in-memory network.
func startHooks(t *testing.T, cfg simulator.Config, status func(int) int) (*simulator.Sim, *api, *receiver) {
	t.Helper()
	rc := &receiver{verifier: webhook.Verifier{Secrets: [][]byte{[]byte(hookSecret)}}, status: status}
	cfg.WebhookURL = "http://payd.test/webhooks/provider"
	cfg.WebhookSecret = hookSecret
	cfg.WebhookClient = serveMem(t, rc)
	sim, a := startMem(t, &cfg)
	return sim, a, rc
}

func ids(ds []delivery) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.event.ID)
	}
	return out
}

func TestWebhooks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim, a, rc := startHooks(t, simulator.Config{}, nil)
		start := time.Now()
		ok := as[provider.Charge](t, a.charge("ok", 1000))
		declined := as[provider.Charge](t, a.charge("declined", 1002))
		ref := as[provider.Refund](t, a.refund("refund", ok.ID, 250))
		a.charge("ok", 1000) // a replay sends nothing
		synctest.Wait()

		got := rc.deliveries()
		if len(got) != 3 {
			t.Fatalf("deliveries = %v, want 3", ids(got))
		}
		wantTypes := []string{provider.EventChargeSucceeded, provider.EventChargeFailed, provider.EventRefundSucceeded}
		for i, d := range got {
			if d.event.Type != wantTypes[i] || d.event.Created != start.Unix() || !d.at.Equal(start) {
				t.Errorf("delivery %d: %s created %d at %v, want %s created %d at once", i, d.event.Type, d.event.Created, d.at.Sub(start), wantTypes[i], start.Unix())
			}
		}
		if got[0].event.ID == got[1].event.ID || got[1].event.ID == got[2].event.ID {
			t.Errorf("event ids %v are not distinct", ids(got))
		}
		var c0, c1 provider.Charge
		var r2 provider.Refund
		for _, x := range []struct {
			i int
			v any
		}{{0, &c0}, {1, &c1}, {2, &r2}} {
			if err := json.Unmarshal(got[x.i].event.Data, x.v); err != nil {
				t.Fatal(err)
			}
		}
		if c0.ID != ok.ID || c0.Status != provider.StatusSucceeded || c1.ID != declined.ID || c1.DeclineCode != "card_declined" || r2.ID != ref.ID || r2.Amount != 250 {
			t.Errorf("event data: %+v, %+v, %+v", c0, c1, r2)
		}
		if s := sim.Stats(); s.WebhookAttempts != 3 || s.WebhooksDelivered != 3 {
			t.Errorf("stats = %+v, want 3 attempts, 3 delivered", s)
		}
	})
}

func TestWebhookDuplicates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, a, rc := startHooks(t, simulator.Config{Faults: simulator.Faults{WebhookDuplicateRate: 1}}, nil)
		for i := range 5 {
			a.charge(fmt.Sprint("k", i), 1000)
		}
		synctest.Wait()
		got := rc.deliveries()
		if len(got) != 10 {
			t.Fatalf("deliveries = %v, want each of 5 events twice", ids(got))
		}
		bodies := map[string][]string{}
		for _, d := range got {
			bodies[d.event.ID] = append(bodies[d.event.ID], d.body)
		}
		for id, b := range bodies {
			if len(b) != 2 || b[0] != b[1] {
				t.Errorf("event %s delivered as %q, want twice the same body", id, b)
			}
		}
	})
}

func TestWebhookReorder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const window = time.Second
		_, a, rc := startHooks(t, simulator.Config{Seed: 1, Faults: simulator.Faults{WebhookReorder: window}}, nil)
		start := time.Now()
		var first []string // event ids, in the order the charges were made
		for i := range 20 {
			a.charge(fmt.Sprint("a", i), 1000)
			first = append(first, fmt.Sprintf("evt_%06d", i+1))
		}
		synctest.Wait()
		if got := rc.deliveries(); len(got) != 0 {
			t.Fatalf("delivered %v before the window ended", ids(got))
		}
		time.Sleep(window)
		synctest.Wait()
		got := ids(rc.deliveries())
		if len(got) != 20 {
			t.Fatalf("at the window's end: %d deliveries, want 20", len(got))
		}
		if slices.Equal(got, first) {
			t.Errorf("delivered in order: %v", got)
		}
		if !slices.Equal(slices.Sorted(slices.Values(got)), first) {
			t.Errorf("delivered %v, want a shuffle of %v", got, first)
		}

		// Events of the next window come after all of this one's.
		time.Sleep(window / 2)
		a.charge("b0", 1000)
		a.charge("b1", 1000)
		time.Sleep(window / 2)
		synctest.Wait()
		all := rc.deliveries()
		if len(all) != 22 || !all[20].at.Equal(start.Add(2*window)) || !slices.Equal(slices.Sorted(slices.Values(ids(all[20:]))), []string{"evt_000021", "evt_000022"}) {
			t.Errorf("second window: %v at %v", ids(all[20:]), all[len(all)-1].at.Sub(start))
		}
	})
}

func TestWebhookDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const max = 10 * time.Second
		_, a, rc := startHooks(t, simulator.Config{Faults: simulator.Faults{WebhookDelayMax: max}}, nil)
		start := time.Now()
		for i := range 20 {
			a.charge(fmt.Sprint("k", i), 1000)
		}
		time.Sleep(max)
		synctest.Wait()
		got := rc.deliveries()
		if len(got) != 20 {
			t.Fatalf("%d deliveries, want 20", len(got))
		}
		var delays []time.Duration
		for _, d := range got {
			delays = append(delays, d.at.Sub(start))
			if d.at.Sub(start) >= max {
				t.Errorf("%s delivered after %v, want under %v", d.event.ID, d.at.Sub(start), max)
			}
		}
		if slices.Min(delays) == slices.Max(delays) {
			t.Errorf("every delivery after %v: delays are not drawn", delays[0])
		}
		if slices.IsSorted(ids(got)) {
			t.Errorf("delays left the events in order: %v", ids(got))
		}
	})
}

func TestWebhookRetries(t *testing.T) {
	t.Run("delivered on the third attempt", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			fail2 := func(n int) int {
				if n < 2 {
					return http.StatusInternalServerError
				}
				return http.StatusOK
			}
			sim, a, rc := startHooks(t, simulator.Config{}, fail2)
			start := time.Now()
			a.charge("k", 1000)
			time.Sleep(time.Second)
			got := rc.deliveries()
			var at []time.Duration
			for _, d := range got {
				at = append(at, d.at.Sub(start))
			}
			want := []time.Duration{0, 100 * time.Millisecond, 300 * time.Millisecond}
			if !slices.Equal(at, want) || got[0].body != got[2].body {
				t.Errorf("attempts at %v, want %v, each the same event", at, want)
			}
			if s := sim.Stats(); s.WebhookAttempts != 3 || s.WebhooksDelivered != 1 || s.WebhooksAbandoned != 0 {
				t.Errorf("stats = %+v", s)
			}
		})
	})
	t.Run("given up after WebhookMaxAttempts", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			down := func(int) int { return http.StatusServiceUnavailable }
			sim, a, rc := startHooks(t, simulator.Config{WebhookMaxAttempts: 4}, down)
			a.charge("k", 1000)
			time.Sleep(time.Hour)
			if got := len(rc.deliveries()); got != 4 {
				t.Errorf("%d attempts, want 4", got)
			}
			if s := sim.Stats(); s.WebhookAttempts != 4 || s.WebhooksDelivered != 0 || s.WebhooksAbandoned != 1 {
				t.Errorf("stats = %+v", s)
			}
		})
	})
}

// TestCloseStopsWebhooks: Close returns with events still waiting, and the
// bubble, which waits for every goroutine it started, then ends.
func TestCloseStopsWebhooks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim, a, rc := startHooks(t, simulator.Config{Faults: simulator.Faults{WebhookDelayMax: time.Hour}}, nil)
		a.charge("k", 1000)
		sim.Close()
		time.Sleep(2 * time.Hour)
		if got := rc.deliveries(); len(got) != 0 {
			t.Errorf("delivered %v after Close", ids(got))
		}
	})
}

// TestWebhooksOverLoopback uses the simulator's own client, whose
// connections Close must close for goleak to pass.
func TestWebhooksOverLoopback(t *testing.T) {
	got := make(chan provider.Event, 1)
	v := webhook.Verifier{Secrets: [][]byte{[]byte(hookSecret)}}
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := v.Verify(r.Header.Get(webhook.DefaultHeader), body); err != nil {
			t.Errorf("verify: %v", err)
		}
		var ev provider.Event
		json.Unmarshal(body, &ev)
		got <- ev
	}))
	t.Cleanup(recv.Close)
	_, a := start(t, &simulator.Config{WebhookURL: recv.URL, WebhookSecret: hookSecret})
	ch := as[provider.Charge](t, a.charge("k", 1000))
	ev := <-got
	var data provider.Charge
	if err := json.Unmarshal(ev.Data, &data); err != nil || ev.Type != provider.EventChargeSucceeded || data.ID != ch.ID {
		t.Errorf("event %+v (%v), want charge.succeeded for %s", ev, err, ch.ID)
	}
}

// TestCloseWaitsForTheSender: once Close returns, the sender's goroutine
// is gone, not merely told to go.
func TestCloseWaitsForTheSender(t *testing.T) {
	sim, a := start(t, &simulator.Config{
		WebhookURL: "http://127.0.0.1:1/", WebhookSecret: hookSecret,
		Faults: simulator.Faults{WebhookDelayMax: time.Hour},
	})
	a.charge("k", 1000)
	sim.Close()
	buf := make([]byte, 1<<20)
	if stacks := string(buf[:runtime.Stack(buf, true)]); strings.Contains(stacks, "simulator.(*sender)") {
		t.Errorf("a sender goroutine outlived Close:\n%s", stacks)
	}
}
