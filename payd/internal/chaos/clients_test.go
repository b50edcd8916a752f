package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

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
