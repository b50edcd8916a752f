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

// Sim is a simulated payment provider. Its state is in memory, and with a
// StateFile on disk as well, and safe for concurrent use. Close it to stop
// its webhook sender and abandon its late executions.
type Sim struct {
	keyWindow time.Duration
	handler   http.Handler
	hooks     *sender // nil without a WebhookURL
	log       *slog.Logger
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
	events      int                   // the number of the latest event sent
	state       *journal              // nil without a StateFile
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

// New returns a simulator set up by cfg. It panics if cfg fails Validate,
// or if its StateFile cannot be loaded: use Open for a Config built from
// user input. If cfg.WebhookURL is set, it starts the goroutine that sends
// webhooks, which Close stops.
func New(cfg *Config) *Sim {
	s, err := Open(cfg)
	if err != nil {
		panic(err)
	}
	return s
}

// Open is New returning an error instead of panicking: for a Config that
// fails Validate, or a StateFile that cannot be opened, locked or read.
func Open(cfg *Config) (*Sim, error) {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	s := &Sim{
		keyWindow:   or(c.KeyWindow, DefaultKeyWindow),
		log:         c.Logger,
		done:        make(chan struct{}),
		rng:         rand.New(rand.NewPCG(c.Seed, c.Seed^0x9e3779b97f4a7c15)),
		chargeByID:  map[string]*provider.Charge{},
		chargeByKey: map[string]*keyedCharge{},
		refundByKey: map[string]*keyedRefund{},
		pending:     map[slot]*pendingCall{},
		inFlight:    map[slot][]uint64{},
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if c.StateFile != "" {
		if err := s.load(c.StateFile); err != nil {
			return nil, err
		}
	}
	f := c.Faults
	s.faults.Store(&f)
	if c.WebhookURL != "" {
		client := c.WebhookClient
		if client == nil {
			client = &http.Client{Transport: &http.Transport{}}
		}
		s.hooks = newSender(c.WebhookURL, []byte(c.WebhookSecret), client,
			or(c.WebhookMaxAttempts, DefaultWebhookMaxAttempts), s.log, &s.stats)
	}
	mux := http.NewServeMux()
	addRoutes(mux, s)
	s.handler = mux
	return s, nil
}

// Handler returns the simulator's HTTP API.
func (s *Sim) Handler() http.Handler { return s.handler }

// Close stops the simulator: the webhook sender's goroutine ends (events
// not yet delivered are dropped), requests waiting out a latency or a hang
// are abandoned unanswered, pending late executions are abandoned and
// never execute, later API requests get 503, and the StateFile is closed
// and unlocked. It returns once no goroutine or timer of the simulator's
// own is left. Calling it again does nothing.
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
		s.mu.Lock()
		s.state.close()
		s.mu.Unlock()
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
	ch, aerr := s.makeCharge(a, d)
	if aerr != nil {
		return provider.Charge{}, 0, aerr
	}
	return cloneCharge(ch), made, nil
}

// makeCharge makes a new charge, declined by the amount rule (on the
// amount asked) or by d, for another amount if d says so, recorded in the
// StateFile first: if that fails, nothing is made. s.mu must be held.
func (s *Sim) makeCharge(a chargeArgs, d decision) (*provider.Charge, *apiError) {
	now := s.stamp()
	c := &provider.Charge{
		ID:             chargeID(len(s.charges) + 1),
		IdempotencyKey: a.key,
		Amount:         a.amount,
		Currency:       a.currency,
		Status:         provider.StatusSucceeded,
		Metadata:       maps.Clone(a.metadata),
		Created:        now,
	}
	if d.otherAmount {
		c.Amount = otherAmount(a.amount)
	}
	switch {
	case a.amount%100 == 2:
		c.Status, c.DeclineCode = provider.StatusFailed, "card_declined"
	case a.amount%100 == 3:
		c.Status, c.DeclineCode = provider.StatusFailed, "insufficient_funds"
	case d.decline:
		c.Status, c.DeclineCode = provider.StatusFailed, "generic_decline"
	}
	rec := record{Charge: c, Amount: a.amount, Currency: a.currency, Event: s.nextEvent()}
	if aerr := s.persist(rec); aerr != nil {
		return nil, aerr
	}
	if d.otherAmount {
		s.stats.otherAmounts.Add(1)
	}
	s.apply(rec)
	typ := provider.EventChargeSucceeded
	if c.Status == provider.StatusFailed {
		typ = provider.EventChargeFailed
	}
	s.emit(rec.Event, typ, now, c)
	return c, nil
}

// addCharge adds c, made under its key for a request that asked for
// amount of currency. s.mu must be held.
func (s *Sim) addCharge(c *provider.Charge, amount int64, currency string) {
	s.charges = append(s.charges, c)
	s.chargeByID[c.ID] = c
	s.chargeByKey[c.IdempotencyKey] = &keyedCharge{charge: c, amount: amount, currency: currency}
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
	ref, aerr := s.makeRefund(a, d)
	if aerr != nil {
		return provider.Refund{}, 0, aerr
	}
	return cloneRefund(ref), made, nil
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
// amount if d says so and it fits in what is left of the charge, recorded
// in the StateFile first: if that fails, nothing is made. s.mu must be
// held.
func (s *Sim) makeRefund(a refundArgs, d decision) (*provider.Refund, *apiError) {
	now := s.stamp()
	ch := s.chargeByID[a.chargeID]
	ref := &provider.Refund{
		ID:             refundID(len(s.refunds) + 1),
		IdempotencyKey: a.key,
		ChargeID:       a.chargeID,
		Amount:         a.amount,
		Status:         provider.StatusSucceeded,
		Metadata:       maps.Clone(a.metadata),
		Created:        now,
	}
	if other := otherAmount(a.amount); d.otherAmount && other <= ch.Amount-ch.AmountRefunded {
		ref.Amount = other
	}
	rec := record{Refund: ref, Amount: a.amount, Event: s.nextEvent()}
	if aerr := s.persist(rec); aerr != nil {
		return nil, aerr
	}
	if ref.Amount != a.amount {
		s.stats.otherAmounts.Add(1)
	}
	s.apply(rec)
	s.emit(rec.Event, provider.EventRefundSucceeded, now, ref)
	return ref, nil
}

// addRefund adds ref, made under its key for a request that asked for
// amount of its charge, and takes it off what is left of the charge.
// s.mu must be held.
func (s *Sim) addRefund(ref *provider.Refund, amount int64) {
	s.chargeByID[ref.ChargeID].AmountRefunded += ref.Amount
	s.refunds = append(s.refunds, ref)
	s.refundByKey[ref.IdempotencyKey] = &keyedRefund{refund: ref, chargeID: ref.ChargeID, amount: amount}
}

func chargeID(n int) string { return fmt.Sprintf("ch_%06d", n) }
func refundID(n int) string { return fmt.Sprintf("re_%06d", n) }

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

// nextEvent is the number of the event the next change sends: 0 if it
// sends none. s.mu must be held.
func (s *Sim) nextEvent() int {
	if s.hooks == nil {
		return 0
	}
	return s.events + 1
}

// emit queues event number n, for what just happened. s.mu must be held,
// so that events are queued in the order things happened.
func (s *Sim) emit(n int, typ string, now time.Time, obj any) {
	if s.hooks == nil {
		return
	}
	data, err := json.Marshal(obj)
	if err != nil {
		panic(err) // a Charge or Refund always marshals
	}
	body, err := json.Marshal(provider.Event{ID: fmt.Sprintf("evt_%06d", n), Type: typ, Created: now.Unix(), Data: data})
	if err != nil {
		panic(err)
	}
	var u [5]float64
	s.draw(u[:])
	s.hooks.enqueue(body, s.faults.Load(), u)
}
