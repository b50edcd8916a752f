package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Client behaviour.
const (
	patience = 30 * time.Second // how long a click, or a refund, is retried before its client gives up
	// defaultSettlePatience is how long a client follows an acknowledged
	// charge or refund to its final state. Then it stops, freeing its
	// in-flight slot (a payment payd holds for an operator would keep it
	// for the whole run), and comes back once after the drain: an outcome
	// it does not see then fails "every client saw its outcome", unless
	// payd holds that payment or refund.
	defaultSettlePatience = 2 * time.Minute
	waitAttempts          = 3   // the first attempts ask to wait for the outcome; later ones do not
	doubleClickPct        = 0.1 // charges sent twice at once
	waitPct               = 0.3 // charges that ask Prefer: wait
	refundPct             = 0.2 // succeeded charges refunded in part, when payd has refunds
	declinePct            = 0.04
	pollTimeout           = 2 * time.Second
)

// target is a system under test as the clients see it.
type target struct {
	name    string
	naive   bool
	seed    uint64
	apiKey  string
	pick    func(*rand.Rand) (string, bool) // a base URL to send to
	refunds bool
	http    *http.Client
	sem     chan struct{}
	// settlePatience bounds how long a client follows an acknowledged
	// charge or refund (defaultSettlePatience).
	settlePatience time.Duration

	requests, inFlight, timeouts, retries, noReplica atomic.Int64

	mu      sync.Mutex
	records []*record
}

func newTarget(name string, naive bool, seed uint64, apiKey string, concurrency int, pick func(*rand.Rand) (string, bool)) *target {
	return &target{
		name: name, naive: naive, seed: seed, apiKey: apiKey, pick: pick,
		http:           &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: concurrency, MaxIdleConns: 4 * concurrency}},
		sem:            make(chan struct{}, concurrency),
		settlePatience: defaultSettlePatience,
	}
}

// waitingOn counts the clients still running that wait on a payment or
// refund in ids: those the in-flight count holds.
func (t *target) waitingOn(ids map[string]bool) int {
	n := 0
	for _, r := range t.snapshot() {
		r.mu.Lock()
		if r.running && r.phase != "done" && ids[r.waitingOn()] {
			n++
		}
		r.mu.Unlock()
	}
	return n
}

func (t *target) snapshot() []*record {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]*record(nil), t.records...)
}

// drive runs charge p's client to its end: accept, settle, refund.
func (t *target) drive(ctx context.Context, p plan) {
	t.inFlight.Add(1)
	rec := &record{plan: p, start: time.Now(), phase: "accept", running: true}
	defer func() {
		rec.mu.Lock()
		rec.running = false
		rec.mu.Unlock()
		t.inFlight.Add(-1)
	}()
	t.mu.Lock()
	t.records = append(t.records, rec)
	t.mu.Unlock()

	var wg sync.WaitGroup
	clicks := 1
	if p.double {
		clicks = 2
	}
	for c := range clicks {
		wg.Go(func() { t.accept(ctx, rec, c) })
	}
	wg.Wait()
	first, ok := rec.firstSeen()
	if !ok {
		if ctx.Err() == nil {
			rec.setPhase("done") // gave up: no 2xx, nothing to see settle
		}
		return // or the drain ended first: the client is still trying (TestClientCutShortIsStillWaiting)
	}
	state := first.State
	if !isFinal(state) {
		rec.setPhase("settle")
		if state = t.poll(ctx, rec, first.ID); state == "" {
			return // the drain ended first: the client is still waiting
		}
	}
	if state == "succeeded" && p.refund > 0 && t.refunds {
		rec.setPhase("refund")
		if !t.refund(ctx, rec, first.ID) {
			return
		}
	}
	rec.setPhase("done")
}

// accept posts the charge until it gets a 2xx, retrying with the same key
// and body on timeouts, 409, 429 and 5xx.
func (t *target) accept(ctx context.Context, rec *record, click int) {
	p := rec.plan
	body, _ := json.Marshal(map[string]any{"amount": p.amount, "currency": "usd", "reference": p.reference})
	b := newBackoff(stream(t.seed, "retry", p.i, click))
	for attempt := 0; b.next(ctx); attempt++ {
		if attempt > 0 {
			t.retries.Add(1)
		}
		base, ok := t.pick(b.rng)
		if !ok {
			t.noReplica.Add(1)
			continue
		}
		wait := 0
		if attempt < waitAttempts {
			wait = p.wait
		}
		a, err := t.do(ctx, http.MethodPost, base+"/v1/charges", p.key, body, wait, p.timeout)
		b.heard(a)
		switch {
		case err != nil:
			continue
		case a.status >= 200 && a.status < 300:
			var c struct{ ID, Status string }
			if json.Unmarshal(a.body, &c) != nil || c.ID == "" {
				rec.note(fmt.Sprintf("%d without a charge: %.200s", a.status, a.body))
				return
			}
			rec.add(seen{Status: a.status, ID: c.ID, State: c.Status, At: time.Since(rec.start)})
			return
		case a.retryable():
			continue
		default:
			rec.note(fmt.Sprintf("POST /v1/charges answered %d: %.200s", a.status, a.body))
			return
		}
	}
}

// follow bounds how long rec's client follows a charge or refund to its
// end: settlePatience. When that runs out, rec says so.
func (t *target) follow(ctx context.Context, rec *record) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := time.AfterFunc(t.settlePatience, func() {
		rec.mu.Lock()
		rec.stopped = t.settlePatience
		rec.mu.Unlock()
		cancel()
	})
	return ctx, func() { stop.Stop(); cancel() }
}

// comeBack is what the clients that stopped following do once the drain
// is over: each reads its charge again, as a merchant reconciling its
// orders would, and is done if it now sees the outcome it waited for. It
// returns how many were (TestClientComesBackForItsOutcome).
func (t *target) comeBack(ctx context.Context) int {
	var wg sync.WaitGroup
	var done atomic.Int64
	sem := make(chan struct{}, comeBackConcurrency)
	for _, rec := range t.snapshot() {
		rec.mu.Lock()
		chargeID, refundID := rec.waitingOn(), ""
		if rec.phase == "refund" && chargeID != "" {
			chargeID, refundID = rec.seen[0].ID, chargeID
		}
		back := rec.stopped > 0 && !rec.running && chargeID != ""
		rec.mu.Unlock()
		if !back {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if t.lookAgain(ctx, rec, chargeID, refundID) {
				done.Add(1)
			}
		})
	}
	wg.Wait()
	return int(done.Load())
}

// comeBackConcurrency bounds the reads of the clients that come back.
const comeBackConcurrency = 16

// lookAgain reads charge chargeID until a read answers, a few tries at
// most, and marks rec done if the answer shows the charge final or, with
// refundID, that refund final.
func (t *target) lookAgain(ctx context.Context, rec *record, chargeID, refundID string) bool {
	rng := stream(t.seed, "come back", rec.plan.i)
	for n := range 5 {
		if n > 0 && !sleepCtx(ctx, pollDelay(n)) {
			return false
		}
		base, ok := t.pick(rng)
		if !ok {
			continue
		}
		a, err := t.do(ctx, http.MethodGet, base+"/v1/charges/"+chargeID, "", nil, 0, pollTimeout)
		rec.heard(a, err)
		var c struct {
			Status  string
			Refunds []refundSeen `json:"refunds"`
		}
		if err != nil || a.status != http.StatusOK || json.Unmarshal(a.body, &c) != nil {
			continue
		}
		final := isFinal(c.Status)
		if refundID != "" {
			final = slices.ContainsFunc(c.Refunds, func(r refundSeen) bool { return r.ID == refundID && isFinal(r.Status) })
		}
		if final {
			rec.mu.Lock()
			rec.phase, rec.cameBack = "done", true
			rec.mu.Unlock()
		}
		return final
	}
	return false
}

// poll reads the charge until it is final; it returns its final state, or
// "" if ctx ended or settlePatience ran out first.
func (t *target) poll(ctx context.Context, rec *record, id string) string {
	rng := stream(t.seed, "poll", rec.plan.i)
	ctx, cancel := t.follow(ctx, rec)
	defer cancel()
	for n := 0; ; n++ {
		if !sleepCtx(ctx, pollDelay(n)) {
			return ""
		}
		base, ok := t.pick(rng)
		if !ok {
			continue
		}
		a, err := t.do(ctx, http.MethodGet, base+"/v1/charges/"+id, "", nil, 0, pollTimeout)
		rec.heard(a, err)
		if err == nil && a.status != http.StatusOK && a.status < 500 && a.status != http.StatusTooManyRequests {
			// The charge was acknowledged, so it exists: a 404 would
			// mean it was acknowledged before it was stored.
			rec.note(fmt.Sprintf("GET /v1/charges/%s answered %d: %.200s", id, a.status, a.body))
		}
		if err != nil || a.status != http.StatusOK {
			continue
		}
		var c struct{ Status string }
		if json.Unmarshal(a.body, &c) == nil && isFinal(c.Status) {
			rec.settle(c.Status)
			return c.Status
		}
	}
}

// refund refunds part of a succeeded charge, with its own idempotency
// key, and follows the refund until it is final. It reports false if ctx
// ended first.
func (t *target) refund(ctx context.Context, rec *record, chargeID string) bool {
	p := rec.plan
	body, _ := json.Marshal(map[string]any{"amount": p.refund})
	b := newBackoff(stream(t.seed, "refund", p.i))
	var got refundSeen
	for b.next(ctx) {
		base, ok := t.pick(b.rng)
		if !ok {
			continue
		}
		a, err := t.do(ctx, http.MethodPost, base+"/v1/charges/"+chargeID+"/refunds", p.key+"-refund", body, 0, max(p.timeout, pollTimeout))
		b.heard(a)
		if err != nil || a.retryable() {
			continue
		}
		if a.status < 200 || a.status >= 300 || json.Unmarshal(a.body, &got) != nil || got.ID == "" {
			rec.note(fmt.Sprintf("POST /v1/charges/%s/refunds answered %d: %.200s", chargeID, a.status, a.body))
			return true
		}
		break
	}
	if got.ID == "" {
		return ctx.Err() == nil // gave up, with no refund to follow; or the drain ended first
	}
	got.Final = isFinal(got.Status)
	rec.mu.Lock()
	rec.refund = &got
	rec.mu.Unlock()
	ctx, cancel := t.follow(ctx, rec)
	defer cancel()
	for n := 0; !got.Final; n++ {
		if !sleepCtx(ctx, pollDelay(n)) {
			return false
		}
		base, ok := t.pick(b.rng)
		if !ok {
			continue
		}
		a, err := t.do(ctx, http.MethodGet, base+"/v1/charges/"+chargeID, "", nil, 0, pollTimeout)
		rec.heard(a, err)
		if err != nil || a.status != http.StatusOK {
			continue
		}
		var c struct {
			Refunds []refundSeen `json:"refunds"`
		}
		if json.Unmarshal(a.body, &c) != nil {
			continue
		}
		for _, r := range c.Refunds {
			if r.ID == got.ID && isFinal(r.Status) {
				rec.mu.Lock()
				rec.refund.Status, rec.refund.Final = r.Status, true
				rec.mu.Unlock()
				return true
			}
		}
	}
	return true
}

// answer is a response, read in full.
type answer struct {
	status     int
	body       []byte
	retryAfter time.Duration // Retry-After, in whole seconds; 0 without one
}

// retryable: a correct server gives this answer to a request that may be
// sent again as it is: 409 (the same key in flight), 429 or 5xx.
func (a answer) retryable() bool {
	return a.status == http.StatusConflict || a.status == http.StatusTooManyRequests || a.status >= 500
}

// do sends one request and reads its answer in full; an answer cut short
// is no answer.
func (t *target) do(ctx context.Context, method, url, key string, body []byte, wait int, timeout time.Duration) (answer, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return answer{}, err
	}
	req.Header.Set("Authorization", "Bearer "+t.apiKey)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	if wait > 0 {
		req.Header.Set("Prefer", fmt.Sprintf("wait=%d", wait))
	}
	t.requests.Add(1)
	resp, err := t.http.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			t.timeouts.Add(1)
		}
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			t.timeouts.Add(1)
		}
		return answer{}, err
	}
	a := answer{status: resp.StatusCode, body: b}
	if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
		a.retryAfter = time.Duration(secs) * time.Second
	}
	return a, nil
}

func (t *target) close() { t.http.CloseIdleConnections() }
