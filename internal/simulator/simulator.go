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

	"github.com/idemhq/idem/internal/provider"
)

// Sim is a simulated payment provider. Its state is in memory and safe for
// concurrent use. Close it to stop its webhook sender.
type Sim struct {
	keyWindow time.Duration
	handler   http.Handler
	hooks     *sender // nil without a WebhookURL
	done      chan struct{}
	closeOnce sync.Once
	faults    atomic.Pointer[Faults]
	stats     counters

	// rng is the one random source; every draw takes rngMu.
	rngMu sync.Mutex
	rng   *rand.Rand

	mu          sync.Mutex
	charges     []*provider.Charge // in the order they were made
	chargeByID  map[string]*provider.Charge
	chargeByKey map[string]*provider.Charge // the latest charge per key
	refunds     []*provider.Refund
	refundByKey map[string]*provider.Refund
	events      int
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
		chargeByKey: map[string]*provider.Charge{},
		refundByKey: map[string]*provider.Refund{},
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
// are abandoned unanswered, and later API requests get 503. It returns
// once no goroutine of the simulator's own is left. Calling it again does
// nothing.
func (s *Sim) Close() {
	s.closeOnce.Do(func() {
		close(s.done)
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
// they were made, as they stand now.
func (s *Sim) Charges() []provider.Charge {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.chargesIn(time.Time{}, time.Time{})
}

// Refunds returns every refund made, in the order they were made.
func (s *Sim) Refunds() []provider.Refund {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refundsIn(time.Time{}, time.Time{})
}

// Stats counts what the simulator has done, for tests and chaos reports.
// Charges and refunds are counted by Charges and Refunds.
type Stats struct {
	Requests    int64 `json:"requests"`     // API requests received
	Errors      int64 `json:"errors"`       // answered 500 by ErrorRate
	RateLimited int64 `json:"rate_limited"` // answered 429 by RateLimitRate
	Drops       int64 `json:"drops"`        // acted on, then dropped unanswered
	Hangs       int64 `json:"hangs"`        // acted on, then held HangFor

	WebhookAttempts   int64 `json:"webhook_attempts"`   // deliveries tried
	WebhooksDelivered int64 `json:"webhooks_delivered"` // event copies answered 2xx
	WebhooksAbandoned int64 `json:"webhooks_abandoned"` // copies given up after WebhookMaxAttempts
}

type counters struct {
	requests, errors, rateLimited, drops, hangs   atomic.Int64
	webhookAttempts, webhooksDelivered, abandoned atomic.Int64
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

// charge makes a charge under key, or returns the one key made within the
// key window (replayed true). A new charge is declined by the amount rule,
// or if decline is set.
func (s *Sim) charge(key string, amount int64, currency string, metadata map[string]string, decline bool) (ch provider.Charge, replayed bool, err *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now().UTC()
	if old := s.chargeByKey[key]; old != nil && now.Sub(old.Created) < s.keyWindow {
		if old.Amount != amount || old.Currency != currency {
			return provider.Charge{}, false, &apiError{http.StatusBadRequest, "idempotency_mismatch",
				fmt.Sprintf("idempotency key %q was used for a charge of %d %s", key, old.Amount, old.Currency)}
		}
		return cloneCharge(old), true, nil
	}
	c := &provider.Charge{
		ID:             fmt.Sprintf("ch_%06d", len(s.charges)+1),
		IdempotencyKey: key,
		Amount:         amount,
		Currency:       currency,
		Status:         provider.StatusSucceeded,
		Metadata:       maps.Clone(metadata),
		Created:        now,
	}
	switch {
	case amount%100 == 2:
		c.Status, c.DeclineCode = provider.StatusFailed, "card_declined"
	case amount%100 == 3:
		c.Status, c.DeclineCode = provider.StatusFailed, "insufficient_funds"
	case decline:
		c.Status, c.DeclineCode = provider.StatusFailed, "generic_decline"
	}
	s.charges = append(s.charges, c)
	s.chargeByID[c.ID] = c
	s.chargeByKey[key] = c
	typ := provider.EventChargeSucceeded
	if c.Status == provider.StatusFailed {
		typ = provider.EventChargeFailed
	}
	s.emit(typ, now, c)
	return cloneCharge(c), false, nil
}

// refund refunds amount of a succeeded charge under key, or returns the
// refund key made within the key window (replayed true). A refusal binds
// nothing to the key.
func (s *Sim) refund(key, chargeID string, amount int64) (r provider.Refund, replayed bool, err *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now().UTC()
	if old := s.refundByKey[key]; old != nil && now.Sub(old.Created) < s.keyWindow {
		if old.ChargeID != chargeID || old.Amount != amount {
			return provider.Refund{}, false, &apiError{http.StatusBadRequest, "idempotency_mismatch",
				fmt.Sprintf("idempotency key %q was used for a refund of %d of %s", key, old.Amount, old.ChargeID)}
		}
		return *old, true, nil
	}
	ch := s.chargeByID[chargeID]
	switch {
	case ch == nil:
		return provider.Refund{}, false, &apiError{http.StatusNotFound, "charge_not_found", fmt.Sprintf("no charge %q", chargeID)}
	case ch.Status != provider.StatusSucceeded:
		return provider.Refund{}, false, &apiError{http.StatusBadRequest, "charge_not_succeeded",
			fmt.Sprintf("charge %s is %s", ch.ID, ch.Status)}
	case amount > ch.Amount-ch.AmountRefunded:
		return provider.Refund{}, false, &apiError{http.StatusBadRequest, "amount_too_large",
			fmt.Sprintf("charge %s has %d left to refund", ch.ID, ch.Amount-ch.AmountRefunded)}
	}
	ref := &provider.Refund{
		ID:             fmt.Sprintf("re_%06d", len(s.refunds)+1),
		IdempotencyKey: key,
		ChargeID:       chargeID,
		Amount:         amount,
		Status:         provider.StatusSucceeded,
		Created:        now,
	}
	ch.AmountRefunded += amount
	s.refunds = append(s.refunds, ref)
	s.refundByKey[key] = ref
	s.emit(provider.EventRefundSucceeded, now, ref)
	return *ref, false, nil
}

// chargeWithKey returns the latest charge made under key, even past the
// key window.
func (s *Sim) chargeWithKey(key string) (provider.Charge, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.chargeByKey[key]
	if c == nil {
		return provider.Charge{}, false
	}
	return cloneCharge(c), true
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

func (s *Sim) refundWithKey(key string) (provider.Refund, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.refundByKey[key]
	if r == nil {
		return provider.Refund{}, false
	}
	return *r, true
}

// chargesIn returns the charges created in [from, to), a zero time
// leaving its end open. s.mu must be held.
func (s *Sim) chargesIn(from, to time.Time) []provider.Charge {
	out := []provider.Charge{}
	for _, c := range s.charges {
		if within(c.Created, from, to) {
			out = append(out, cloneCharge(c))
		}
	}
	return out
}

// refundsIn is chargesIn for refunds. s.mu must be held.
func (s *Sim) refundsIn(from, to time.Time) []provider.Refund {
	out := []provider.Refund{}
	for _, r := range s.refunds {
		if within(r.Created, from, to) {
			out = append(out, *r)
		}
	}
	return out
}

func within(t, from, to time.Time) bool {
	return (from.IsZero() || !t.Before(from)) && (to.IsZero() || t.Before(to))
}

func cloneCharge(c *provider.Charge) provider.Charge {
	out := *c
	out.Metadata = maps.Clone(c.Metadata)
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
