package simulator

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"
)

// Defaults for Config and Faults.
const (
	DefaultKeyWindow          = 24 * time.Hour
	DefaultHangFor            = time.Minute
	DefaultLateFor            = 2 * time.Second
	DefaultWebhookMaxAttempts = 8
)

// Faults are the failures the simulator injects. The zero value injects
// none. Every API request (not /_faults or /_stats) draws its faults once,
// on arrival; when several hit, the first in this order wins: 500, 429,
// the in-flight 409, late execution, and then, once the request is acted
// on, drop and hang.
type Faults struct {
	// LatencyMin and LatencyMax bound the latency added to every API
	// request before it is acted on, drawn uniformly from [LatencyMin,
	// LatencyMax). A LatencyMax below LatencyMin means LatencyMin exactly.
	// A request whose client gives up meanwhile is still acted on, as a
	// provider that has read a request would. Default 0: none.
	LatencyMin time.Duration
	LatencyMax time.Duration

	// ErrorRate is the probability that a request is answered 500,
	// code "server_error", without being acted on. Default 0.
	ErrorRate float64

	// RateLimitRate is the probability that a request is answered 429,
	// code "rate_limited", with Retry-After: 1, without being acted on.
	// Default 0.
	RateLimitRate float64

	// DeclineRate is the probability that a new charge the amount rule
	// lets through is declined anyway, with code "generic_decline".
	// Default 0.
	DeclineRate float64

	// DropAfterChargeRate is the probability that a request is acted on
	// (a charge or refund made, a lookup answered) and its connection then
	// closed without a response: the ghost charge. Default 0.
	DropAfterChargeRate float64

	// HangRate is the probability that a request is acted on and answered
	// only HangFor later. A client that gives up first gets no response.
	// Default 0.
	HangRate float64

	// HangFor is how long a hanging request waits before it answers; set
	// it past the client's timeout. Default DefaultHangFor (1m).
	HangFor time.Duration

	// LateRate is the probability that a new charge or refund (a POST
	// whose key has no result and nothing pending) is executed late. It is
	// validated on arrival, and refused at once if it would be; otherwise
	// it is held pending under its key and executed only after a delay
	// drawn uniformly from [LateMin, LateMax), as if it had just arrived
	// then. Its own response is lost: the connection is closed unanswered
	// when the execution comes due, or earlier if the client gives up.
	// While it is pending, a lookup of its key answers 404, listings leave
	// it out, and any other POST under its key is answered 409
	// idempotency_key_in_use. A pending execution is abandoned by Close.
	// Default 0.
	LateRate float64

	// LateMin and LateMax bound the delay of a late execution. A LateMax
	// at or below LateMin means LateMin exactly; both zero mean
	// DefaultLateFor (2s).
	LateMin time.Duration
	LateMax time.Duration

	// InFlightRate is the probability that a POST whose idempotency key is
	// in use by an earlier request, received and not yet answered or
	// dropped, is answered 409 idempotency_key_in_use at once, without
	// being acted on. Otherwise it is served as usual, and replays what
	// the earlier one made. A POST under a key pending a late execution is
	// answered 409 whatever the rate. Default 0.
	InFlightRate float64

	// OtherAmountRate is the probability that a new charge or refund is
	// made for another amount than the one asked: one minor unit less, or
	// one more if 1 was asked. A refund whose other amount would exceed
	// what is left of its charge is made as asked. The decline rule still
	// reads the amount asked. Default 0.
	OtherAmountRate float64

	// WebhookDuplicateRate is the probability that an event is delivered
	// twice, each copy with its own delay. Default 0.
	WebhookDuplicateRate float64

	// WebhookReorder, if positive, holds events in windows of this length
	// and delivers each window's events together at its end, in a shuffled
	// order. Default 0: events are delivered in the order they happened.
	WebhookReorder time.Duration

	// WebhookDelayMax delays each delivery by a time drawn uniformly from
	// [0, WebhookDelayMax). Independent delays reorder events too.
	// Default 0: none.
	WebhookDelayMax time.Duration
}

// Validate reports whether f is usable: rates within [0, 1] and no
// negative durations.
func (f Faults) Validate() error {
	var errs []error
	for _, r := range []struct {
		name string
		v    float64
	}{
		{"ErrorRate", f.ErrorRate},
		{"RateLimitRate", f.RateLimitRate},
		{"DeclineRate", f.DeclineRate},
		{"DropAfterChargeRate", f.DropAfterChargeRate},
		{"HangRate", f.HangRate},
		{"LateRate", f.LateRate},
		{"InFlightRate", f.InFlightRate},
		{"OtherAmountRate", f.OtherAmountRate},
		{"WebhookDuplicateRate", f.WebhookDuplicateRate},
	} {
		if !(r.v >= 0 && r.v <= 1) { // NaN fails both
			errs = append(errs, fmt.Errorf("%s %v is not within [0, 1]", r.name, r.v))
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"LatencyMin", f.LatencyMin},
		{"LatencyMax", f.LatencyMax},
		{"HangFor", f.HangFor},
		{"LateMin", f.LateMin},
		{"LateMax", f.LateMax},
		{"WebhookReorder", f.WebhookReorder},
		{"WebhookDelayMax", f.WebhookDelayMax},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s %v is negative", d.name, d.v))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("simulator: faults: %w", err)
	}
	return nil
}

// Config sets a simulator up. A nil *Config, and every zero field, means
// the documented default. Every field but WebhookClient and Logger has a
// flag (see RegisterFlags).
type Config struct {
	// Faults are the faults in force at the start; POST /_faults and
	// SetFaults replace them. Default: none.
	Faults

	// Seed seeds the one random source behind every fault: the same seed
	// and the same sequence of requests give the same run. Default 0.
	Seed uint64

	// KeyWindow is how long an idempotency key returns its first result.
	// A key reused later makes a new charge or refund. Default
	// DefaultKeyWindow (24h).
	KeyWindow time.Duration

	// WebhookURL, if set, receives a signed event for every charge and
	// refund made. Default "": no webhooks.
	WebhookURL string

	// WebhookSecret signs the events (webhook.Sign). Required with
	// WebhookURL.
	WebhookSecret string

	// WebhookMaxAttempts bounds the deliveries of one event copy: a copy
	// not answered 2xx is tried again after 100ms, 200ms, 400ms… (at most
	// 10s apart) until this many attempts, then given up. Default
	// DefaultWebhookMaxAttempts (8).
	WebhookMaxAttempts int

	// WebhookClient delivers the events; its idle connections are closed
	// by Close. Default: a client of the simulator's own.
	WebhookClient *http.Client

	// StateFile, if set, is where the simulator keeps its charges and
	// refunds, what each key was asked for, and its id and event counters,
	// so that a new simulator on the file carries on where the last one
	// stopped, after a crash too: no id or event id repeats, and every key
	// replays what it made (TestStateSurvivesAReopen). Each change is
	// written and synced before the request that made it is answered
	// (TestStateSurvivesACrash); a change that cannot be written is
	// refused. The file is created if missing and locked while the
	// simulator is open. Pending late executions, undelivered webhooks,
	// faults set by POST /_faults and Stats are not kept (see "State" in
	// the package doc). Default "": in memory only.
	StateFile string

	// Logger receives abandoned webhook deliveries, and state file
	// failures. Default: discard.
	Logger *slog.Logger
}

// Validate reports whether c is usable; New panics on a Config that is
// not, so check one built from user input first.
func (c *Config) Validate() error {
	errs := []error{c.Faults.Validate()}
	if c.KeyWindow < 0 {
		errs = append(errs, fmt.Errorf("simulator: KeyWindow %v is negative", c.KeyWindow))
	}
	if c.WebhookMaxAttempts < 0 {
		errs = append(errs, fmt.Errorf("simulator: WebhookMaxAttempts %d is negative", c.WebhookMaxAttempts))
	}
	if c.WebhookURL != "" {
		u, err := url.Parse(c.WebhookURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("simulator: WebhookURL %q is not an absolute http or https URL", c.WebhookURL))
		}
		if c.WebhookSecret == "" {
			errs = append(errs, errors.New("simulator: WebhookURL needs a WebhookSecret"))
		}
	}
	return errors.Join(errs...)
}

// RegisterFlags defines one flag on fs for each field of c but
// WebhookClient and Logger, writing into c, with c's values (or the
// defaults) as the flags' defaults:
//
//	-seed -key-window -webhook-url -webhook-secret -webhook-max-attempts -state
//	-latency-min -latency-max -error-rate -rate-limit-rate -decline-rate
//	-drop-after-charge-rate -hang-rate -hang-for
//	-late-rate -late-min -late-max -in-flight-rate -other-amount-rate
//	-webhook-duplicate-rate -webhook-reorder -webhook-delay-max
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.Uint64Var(&c.Seed, "seed", c.Seed, "seed of every random fault: the same seed and requests give the same run")
	fs.DurationVar(&c.KeyWindow, "key-window", or(c.KeyWindow, DefaultKeyWindow), "how long an idempotency key returns its first result")
	fs.StringVar(&c.WebhookURL, "webhook-url", c.WebhookURL, "where to send signed events (none if empty)")
	fs.StringVar(&c.WebhookSecret, "webhook-secret", c.WebhookSecret, "secret that signs the events")
	fs.IntVar(&c.WebhookMaxAttempts, "webhook-max-attempts", or(c.WebhookMaxAttempts, DefaultWebhookMaxAttempts), "attempts to deliver one event copy")
	fs.StringVar(&c.StateFile, "state", c.StateFile, "file that keeps the charges, refunds and ids across restarts, synced before each answer (in memory only if empty)")

	f := &c.Faults
	fs.DurationVar(&f.LatencyMin, "latency-min", f.LatencyMin, "least latency added to each request")
	fs.DurationVar(&f.LatencyMax, "latency-max", f.LatencyMax, "most latency added to each request")
	fs.Float64Var(&f.ErrorRate, "error-rate", f.ErrorRate, "probability of a 500 that does nothing")
	fs.Float64Var(&f.RateLimitRate, "rate-limit-rate", f.RateLimitRate, "probability of a 429 that does nothing")
	fs.Float64Var(&f.DeclineRate, "decline-rate", f.DeclineRate, "probability that a new charge is declined")
	fs.Float64Var(&f.DropAfterChargeRate, "drop-after-charge-rate", f.DropAfterChargeRate, "probability of acting, then closing the connection unanswered")
	fs.Float64Var(&f.HangRate, "hang-rate", f.HangRate, "probability of acting, then answering after -hang-for")
	fs.DurationVar(&f.HangFor, "hang-for", or(f.HangFor, DefaultHangFor), "how long a hanging request waits to answer")
	fs.Float64Var(&f.LateRate, "late-rate", f.LateRate, "probability that a new charge or refund is executed late, its response lost")
	fs.DurationVar(&f.LateMin, "late-min", f.LateMin, "least delay of a late execution (with -late-max 0 as well: 2s)")
	fs.DurationVar(&f.LateMax, "late-max", f.LateMax, "most delay of a late execution")
	fs.Float64Var(&f.InFlightRate, "in-flight-rate", f.InFlightRate, "probability of a 409 for a request whose key an earlier one is processing")
	fs.Float64Var(&f.OtherAmountRate, "other-amount-rate", f.OtherAmountRate, "probability that a new charge or refund is made for another amount")
	fs.Float64Var(&f.WebhookDuplicateRate, "webhook-duplicate-rate", f.WebhookDuplicateRate, "probability that an event is delivered twice")
	fs.DurationVar(&f.WebhookReorder, "webhook-reorder", f.WebhookReorder, "hold events in windows this long and deliver each shuffled (0: in order)")
	fs.DurationVar(&f.WebhookDelayMax, "webhook-delay-max", f.WebhookDelayMax, "most delay added to each delivery")
}

func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// uniform maps a draw u from [0, 1) onto [lo, hi), or lo if hi <= lo.
func uniform(u float64, lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(u*float64(hi-lo))
}
