package simulator

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idemhq/idem/payd/internal/provider"
)

// Sim is a simulated payment provider. Its state is in memory and safe for
// concurrent use. Close it to stop its webhook sender and abandon its late
// executions.
type Sim struct {
	keyWindow time.Duration
	handler   http.Handler
	hooks     *sender // nil without a WebhookURL
	done      chan struct{}
	closeOnce sync.Once
	faults    atomic.Pointer[Faults]
	stats     counters
	late      sync.WaitGroup // the goroutines of pending late executions

	// rng is the one random source; every draw takes rngMu.
	rngMu sync.Mutex
	rng   *rand.Rand

	mu          sync.Mutex
	charges     []*provider.Charge // in the order they were made
	chargeByID  map[string]*provider.Charge
	chargeByKey map[string]*keyedCharge // the latest charge per key
	refunds     []*provider.Refund      // in the order they were made
	refundByKey map[string]*keyedRefund
	lastCreated time.Time             // of the latest charge or refund made
	pending     map[slot]*pendingCall // keys deferred to a late execution
	inFlight    map[slot][]uint64     // keys of POSTs not yet answered, by request sequence
	events      int
}

// keyedCharge is the charge made under a key and what the request that
// made it asked for, which later requests under the key are compared with.
type keyedCharge struct {
	charge   *provider.Charge
	amount   int64
	currency string
}

// keyedRefund is keyedCharge for refunds.
type keyedRefund struct {
	refund   *provider.Refund
	chargeID string
	amount   int64
}

// New returns a simulator set up by cfg. It panics if cfg fails Validate.
// If cfg.WebhookURL is set, it starts the goroutine that sends webhooks,
// which Close stops.
func New(cfg *Config) *Sim {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if err := c.Validate(); err != nil {
		panic(err)
	}
	s := &Sim{
		keyWindow:   or(c.KeyWindow, DefaultKeyWindow),
		done:        make(chan struct{}),
		rng:         rand.New(rand.NewPCG(c.Seed, c.Seed^0x9e3779b97f4a7c15)),
		chargeByID:  map[string]*provider.Charge{},
		chargeByKey: map[string]*keyedCharge{},
		refundByKey: map[string]*keyedRefund{},
		pending:     map[slot]*pendingCall{},
		inFlight:    map[slot][]uint64{},
	}
	f := c.Faults
	s.faults.Store(&f)
	if c.WebhookURL != "" {
		log := c.Logger
		if log == nil {
			log = slog.New(slog.DiscardHandler)
		}
		client := c.WebhookClient
		if client == nil {
			client = &http.Client{Transport: &http.Transport{}}
		}
		s.hooks = newSender(c.WebhookURL, []byte(c.WebhookSecret), client,
			or(c.WebhookMaxAttempts, DefaultWebhookMaxAttempts), log, &s.stats)
	}
	mux := http.NewServeMux()
	addRoutes(mux, s)
	s.handler = mux
	return s
}

// Handler returns the simulator's HTTP API.
func (s *Sim) Handler() http.Handler { return s.handler }

// Close stops the simulator: the webhook sender's goroutine ends (events
// not yet delivered are dropped), requests waiting out a latency or a hang
// are abandoned unanswered, pending late executions are abandoned and
// never execute, and later API requests get 503. It returns once no
// goroutine or timer of the simulator's own is left. Calling it again
// does nothing.
func (s *Sim) Close() {
	s.closeOnce.Do(func() {
		// Under s.mu, so that no late execution is deferred, or runs,
		// once done is closed.
		s.mu.Lock()
		close(s.done)
		s.mu.Unlock()
		s.late.Wait()
		if s.hooks != nil {
			s.hooks.close()
		}
	})
}

func (s *Sim) closed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// Faults returns the faults in force.
func (s *Sim) Faults() Faults { return *s.faults.Load() }

// SetFaults replaces the faults in force, as POST /_faults does. Requests
// already in flight keep the faults they drew.
func (s *Sim) SetFaults(f Faults) error {
	if err := f.Validate(); err != nil {
		return err
	}
	s.faults.Store(&f)
	return nil
}

// Charges returns every charge made, declined ones included, in the order
// they were made, as they stand now. Charges pending a late execution are
// not made yet.
func (s *Sim) Charges() []provider.Charge {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]provider.Charge, 0, len(s.charges))
	for _, c := range s.charges {
		out = append(out, cloneCharge(c))
	}
	return out
}

// Refunds returns every refund made, in the order they were made.
func (s *Sim) Refunds() []provider.Refund {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]provider.Refund, 0, len(s.refunds))
	for _, r := range s.refunds {
		out = append(out, cloneRefund(r))
	}
	return out
}

// Stats counts what the simulator has done, for tests and chaos reports.
// Charges and refunds are counted by Charges and Refunds.
type Stats struct {
	Requests          int64 `json:"requests"`            // API requests received
	Errors            int64 `json:"errors"`              // answered 500 by ErrorRate
	RateLimited       int64 `json:"rate_limited"`        // answered 429 by RateLimitRate
	Drops             int64 `json:"drops"`               // acted on, then dropped unanswered
	Hangs             int64 `json:"hangs"`               // acted on, then held HangFor
	LateExecutions    int64 `json:"late_executions"`     // deferred by LateRate and since executed, refused refunds included
	InFlightConflicts int64 `json:"in_flight_conflicts"` // answered 409 idempotency_key_in_use
	OtherAmounts      int64 `json:"other_amounts"`       // charges and refunds made for another amount by OtherAmountRate

	WebhookAttempts   int64 `json:"webhook_attempts"`   // deliveries tried
	WebhooksDelivered int64 `json:"webhooks_delivered"` // event copies answered 2xx
	WebhooksAbandoned int64 `json:"webhooks_abandoned"` // copies given up after WebhookMaxAttempts
}

type counters struct {
	requests, errors, rateLimited, drops, hangs     atomic.Int64
	lateExecutions, inFlightConflicts, otherAmounts atomic.Int64
	webhookAttempts, webhooksDelivered, abandoned   atomic.Int64
}

// Stats returns the counts so far.
func (s *Sim) Stats() Stats {
	c := &s.stats
	return Stats{
		Requests:          c.requests.Load(),
		Errors:            c.errors.Load(),
		RateLimited:       c.rateLimited.Load(),
		Drops:             c.drops.Load(),
		Hangs:             c.hangs.Load(),
		LateExecutions:    c.lateExecutions.Load(),
		InFlightConflicts: c.inFlightConflicts.Load(),
		OtherAmounts:      c.otherAmounts.Load(),
		WebhookAttempts:   c.webhookAttempts.Load(),
		WebhooksDelivered: c.webhooksDelivered.Load(),
		WebhooksAbandoned: c.abandoned.Load(),
	}
}

// draw fills u with draws from [0, 1) of the one random source. Callers
// draw a fixed number per request or event, whatever the faults, so that
// one request's faults never shift another's.
func (s *Sim) draw(u []float64) {
	s.rngMu.Lock()
	defer s.rngMu.Unlock()
	for i := range u {
		u[i] = s.rng.Float64()
	}
}

// apiError is a refusal, answered with its status and
// {"error":{"code":…,"message":…}}.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

// outcome is what a POST came to, when it was not refused.
type outcome uint8

const (
	made     outcome = iota + 1 // a new charge or refund
	replayed                    // the one its key made
	deferred                    // pending a late execution; no response
)

// chargeArgs is what a POST /charges asks for.
type chargeArgs struct {
	key      string
	amount   int64
	currency string
	metadata map[string]string
}

// charge makes a charge under a.key, or returns the one the key made
// within the key window if it was asked for with the same amount and
// currency, or defers it to a late execution if c drew that.
func (s *Sim) charge(a chargeArgs, c *call) (provider.Charge, outcome, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := slot{chargeKeys, a.key}
	if s.pending[k] != nil {
		s.stats.inFlightConflicts.Add(1)
		return provider.Charge{}, 0, inUse(a.key)
	}
	if old := s.chargeByKey[a.key]; old != nil && time.Since(old.charge.Created) < s.keyWindow {
		if old.amount != a.amount || old.currency != a.currency {
			return provider.Charge{}, 0, &apiError{http.StatusBadRequest, "idempotency_mismatch",
				fmt.Sprintf("idempotency key %q was used for a charge of %d %s", a.key, old.amount, old.currency)}
		}
		return cloneCharge(old.charge), replayed, nil
	}
	d := c.decision
	if d.late && s.deferCall(k, c, func() { s.makeCharge(a, d) }) {
		return provider.Charge{}, deferred, nil
	}
	return cloneCharge(s.makeCharge(a, d)), made, nil
}

// makeCharge makes a new charge, declined by the amount rule (on the
// amount asked) or by d, for another amount if d says so. s.mu must be
// held.
func (s *Sim) makeCharge(a chargeArgs, d decision) *provider.Charge {
	now := s.stamp()
	c := &provider.Charge{
		ID:             fmt.Sprintf("ch_%06d", len(s.charges)+1),
		IdempotencyKey: a.key,
		Amount:         a.amount,
		Currency:       a.currency,
		Status:         provider.StatusSucceeded,
		Metadata:       maps.Clone(a.metadata),
		Created:        now,
	}
	if d.otherAmount {
		c.Amount = otherAmount(a.amount)
		s.stats.otherAmounts.Add(1)
	}
	switch {
	case a.amount%100 == 2:
		c.Status, c.DeclineCode = provider.StatusFailed, "card_declined"
	case a.amount%100 == 3:
		c.Status, c.DeclineCode = provider.StatusFailed, "insufficient_funds"
	case d.decline:
		c.Status, c.DeclineCode = provider.StatusFailed, "generic_decline"
	}
	s.charges = append(s.charges, c)
	s.chargeByID[c.ID] = c
	s.chargeByKey[a.key] = &keyedCharge{charge: c, amount: a.amount, currency: a.currency}
	typ := provider.EventChargeSucceeded
	if c.Status == provider.StatusFailed {
		typ = provider.EventChargeFailed
	}
	s.emit(typ, now, c)
	return c
}

// refundArgs is what a POST /refunds asks for.
type refundArgs struct {
	key      string
	chargeID string
	amount   int64
	metadata map[string]string
}

// refund refunds a.amount of a succeeded charge under a.key, or returns
// the refund the key made within the key window if it was asked for with
// the same charge and amount, or defers it to a late execution if c drew
// that. A refusal, now or at a late execution, binds nothing to the key.
func (s *Sim) refund(a refundArgs, c *call) (provider.Refund, outcome, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := slot{refundKeys, a.key}
	if s.pending[k] != nil {
		s.stats.inFlightConflicts.Add(1)
		return provider.Refund{}, 0, inUse(a.key)
	}
	if old := s.refundByKey[a.key]; old != nil && time.Since(old.refund.Created) < s.keyWindow {
		if old.chargeID != a.chargeID || old.amount != a.amount {
			return provider.Refund{}, 0, &apiError{http.StatusBadRequest, "idempotency_mismatch",
				fmt.Sprintf("idempotency key %q was used for a refund of %d of %s", a.key, old.amount, old.chargeID)}
		}
		return cloneRefund(old.refund), replayed, nil
	}
	if aerr := s.refundable(a.chargeID, a.amount); aerr != nil {
		return provider.Refund{}, 0, aerr
	}
	d := c.decision
	late := func() {
		if s.refundable(a.chargeID, a.amount) == nil { // the charge as it stands now
			s.makeRefund(a, d)
		}
	}
	if d.late && s.deferCall(k, c, late) {
		return provider.Refund{}, deferred, nil
	}
	return cloneRefund(s.makeRefund(a, d)), made, nil
}

// refundable refuses a refund of amount of the charge, as it stands, if
// the charge is unknown or not succeeded or has less than amount left to
// refund. s.mu must be held.
func (s *Sim) refundable(chargeID string, amount int64) *apiError {
	ch := s.chargeByID[chargeID]
	switch {
	case ch == nil:
		return &apiError{http.StatusNotFound, "charge_not_found", fmt.Sprintf("no charge %q", chargeID)}
	case ch.Status != provider.StatusSucceeded:
		return &apiError{http.StatusBadRequest, "charge_not_succeeded", fmt.Sprintf("charge %s is %s", ch.ID, ch.Status)}
	case amount > ch.Amount-ch.AmountRefunded:
		return &apiError{http.StatusBadRequest, "amount_too_large",
			fmt.Sprintf("charge %s has %d left to refund", ch.ID, ch.Amount-ch.AmountRefunded)}
	}
	return nil
}

// makeRefund makes a refund that refundable let through, for another
// amount if d says so and it fits in what is left of the charge. s.mu
// must be held.
func (s *Sim) makeRefund(a refundArgs, d decision) *provider.Refund {
	now := s.stamp()
	ch := s.chargeByID[a.chargeID]
	ref := &provider.Refund{
		ID:             fmt.Sprintf("re_%06d", len(s.refunds)+1),
		IdempotencyKey: a.key,
		ChargeID:       a.chargeID,
		Amount:         a.amount,
		Status:         provider.StatusSucceeded,
		Metadata:       maps.Clone(a.metadata),
		Created:        now,
	}
	if other := otherAmount(a.amount); d.otherAmount && other <= ch.Amount-ch.AmountRefunded {
		ref.Amount = other
		s.stats.otherAmounts.Add(1)
	}
	ch.AmountRefunded += ref.Amount
	s.refunds = append(s.refunds, ref)
	s.refundByKey[a.key] = &keyedRefund{refund: ref, chargeID: a.chargeID, amount: a.amount}
	s.emit(provider.EventRefundSucceeded, now, ref)
	return ref
}

// otherAmount is the amount OtherAmountRate makes instead of amount: one
// minor unit less, or one more if that would leave nothing.
func otherAmount(amount int64) int64 {
	if amount == 1 {
		return 2
	}
	return amount - 1
}

// stamp returns the creation time of a charge or refund made now: never
// before the latest one's, so that the order they were made in is their
// Created order, which the listings rely on, even if the wall clock steps
// back. s.mu must be held.
func (s *Sim) stamp() time.Time {
	now := time.Now().UTC()
	if now.Before(s.lastCreated) {
		now = s.lastCreated
	}
	s.lastCreated = now
	return now
}

// chargeWithKey returns the latest charge made under key, even past the
// key window; none while the key is pending a late execution.
func (s *Sim) chargeWithKey(key string) (provider.Charge, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.chargeByKey[key]
	if c == nil || s.pending[slot{chargeKeys, key}] != nil {
		return provider.Charge{}, false
	}
	return cloneCharge(c.charge), true
}

func (s *Sim) chargeWithID(id string) (provider.Charge, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.chargeByID[id]
	if c == nil {
		return provider.Charge{}, false
	}
	return cloneCharge(c), true
}

// refundWithKey is chargeWithKey for refunds.
func (s *Sim) refundWithKey(key string) (provider.Refund, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.refundByKey[key]
	if r == nil || s.pending[slot{refundKeys, key}] != nil {
		return provider.Refund{}, false
	}
	return cloneRefund(r.refund), true
}

func cloneCharge(c *provider.Charge) provider.Charge {
	out := *c
	out.Metadata = maps.Clone(c.Metadata)
	return out
}

func cloneRefund(r *provider.Refund) provider.Refund {
	out := *r
	out.Metadata = maps.Clone(r.Metadata)
	return out
}

// emit queues the event for what just happened. s.mu must be held, so
// that events are queued in the order things happened.
func (s *Sim) emit(typ string, now time.Time, obj any) {
	if s.hooks == nil {
		return
	}
	data, err := json.Marshal(obj)
	if err != nil {
		panic(err) // a Charge or Refund always marshals
	}
	s.events++
	body, err := json.Marshal(provider.Event{ID: fmt.Sprintf("evt_%06d", s.events), Type: typ, Created: now.Unix(), Data: data})
	if err != nil {
		panic(err)
	}
	var u [5]float64
	s.draw(u[:])
	s.hooks.enqueue(body, s.faults.Load(), u)
}
