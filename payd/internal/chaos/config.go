package chaos

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Kind is a kind of fault.
type Kind string

// The faults. The failpoint kills are payd's own (each process draws them
// per hit with Config.FailpointRate); the others are on the schedule.
const (
	KillAfterClaim      Kind = "kill-after-claim"      // SIGKILL after a claim is committed, before the provider call
	KillAfterSend       Kind = "kill-after-send"       // SIGKILL after the provider request is written
	KillAfterResponse   Kind = "kill-after-response"   // SIGKILL after the provider answered, before the outcome is recorded
	KillRandom          Kind = "kill-random"           // SIGKILL at a random time
	Pause               Kind = "pause"                 // SIGSTOP past the lease, then SIGCONT
	Provider5xx         Kind = "provider-5xx"          // a burst of 500s from the provider, nothing done
	Provider429         Kind = "provider-429"          // a burst of 429s from the provider, nothing done
	ProviderDrop        Kind = "provider-drop"         // the provider charges, then drops the response
	ProviderHang        Kind = "provider-hang"         // the provider charges, then answers after payd gave up
	ProviderReset       Kind = "provider-reset"        // the link to the provider resets every connection
	ProviderLatency     Kind = "provider-latency"      // the link to the provider is slow
	ProviderLate        Kind = "provider-late"         // the provider drops the response, says "not found", then executes the request late
	ProviderInFlight    Kind = "provider-in-flight"    // the provider answers 409 to a request whose key is still in flight
	ProviderOtherAmount Kind = "provider-other-amount" // the provider charges or refunds another amount than asked
	DBReset             Kind = "db-reset"              // the link to PostgreSQL resets every connection
	DBLatency           Kind = "db-latency"            // the link to PostgreSQL is slow
	WebhookDuplicate    Kind = "webhook-duplicate"     // the provider delivers webhooks twice
	WebhookReorder      Kind = "webhook-reorder"       // the provider delivers webhooks out of order
)

// kindInfo describes a kind for help texts and for deciding where it
// applies.
type kindInfo struct {
	kind      Kind
	summary   string
	failpoint string // payd's failpoint, for the failpoint kills
	postgres  bool   // needs the network hop to PostgreSQL
	webhooks  bool   // needs payd to take webhooks
	process   bool   // a signal to a payd process
	late      bool   // needs payd to bound how late the provider may act (--provider-max-delay)
}

var kindInfos = []kindInfo{
	{kind: KillAfterClaim, failpoint: "after-claim", summary: "SIGKILL at payd's failpoint after a claim commits, before the provider is called"},
	{kind: KillAfterSend, failpoint: "after-send", summary: "SIGKILL at payd's failpoint after the provider request is sent"},
	{kind: KillAfterResponse, failpoint: "after-response", summary: "SIGKILL at payd's failpoint after the provider answered, before the outcome is recorded"},
	{kind: KillRandom, process: true, summary: "SIGKILL a replica at a random time; it restarts after a short seeded delay"},
	{kind: Pause, process: true, summary: "SIGSTOP a replica for longer than its lease, then SIGCONT"},
	{kind: Provider5xx, summary: "a burst of provider 500s (nothing charged)"},
	{kind: Provider429, summary: "a burst of provider 429s (nothing charged)"},
	{kind: ProviderDrop, summary: "the provider charges, then closes the connection unanswered"},
	{kind: ProviderHang, summary: "the provider charges, then answers only after payd's timeout"},
	{kind: ProviderReset, summary: "every connection to the provider is reset (proxy)"},
	{kind: ProviderLatency, summary: "the link to the provider is slower than payd's timeout (proxy)"},
	{kind: ProviderLate, late: true, summary: "the provider loses the response, says \"not found\", then charges or refunds seconds later"},
	{kind: ProviderInFlight, summary: "the provider answers 409 to a request whose key an earlier one is still processing"},
	{kind: ProviderOtherAmount, summary: "the provider charges or refunds one minor unit off the amount asked"},
	{kind: DBReset, postgres: true, summary: "every connection to PostgreSQL is reset (proxy)"},
	{kind: DBLatency, postgres: true, summary: "the link to PostgreSQL gets a latency spike (proxy)"},
	{kind: WebhookDuplicate, webhooks: true, summary: "the provider delivers each webhook twice"},
	{kind: WebhookReorder, webhooks: true, summary: "the provider holds webhooks and delivers them shuffled"},
}

func info(k Kind) kindInfo {
	for _, i := range kindInfos {
		if i.kind == k {
			return i
		}
	}
	return kindInfo{kind: k}
}

// Kinds returns every fault kind, in the order reports list them.
func Kinds() []Kind {
	out := make([]Kind, len(kindInfos))
	for i, k := range kindInfos {
		out[i] = k.kind
	}
	return out
}

// Describe returns one line saying what a kind does.
func Describe(k Kind) string { return info(k).summary }

// ParseFaults reads a comma-separated list of fault kinds. "all" is every
// kind, "none" none, "failpoints" the three failpoint kills, "provider"
// and "db" their families; "-kind" removes a kind, so "all,-pause" is
// everything but pauses.
func ParseFaults(spec string) ([]Kind, error) {
	set := map[Kind]bool{}
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		on := true
		if name, ok := strings.CutPrefix(part, "-"); ok {
			part, on = name, false
		}
		var group []Kind
		switch part {
		case "all":
			group = Kinds()
		case "none":
			clear(set)
			continue
		case "failpoints":
			group = []Kind{KillAfterClaim, KillAfterSend, KillAfterResponse}
		case "provider", "db", "webhook":
			for _, k := range Kinds() {
				if strings.HasPrefix(string(k), part+"-") {
					group = append(group, k)
				}
			}
		default:
			if info(Kind(part)).summary == "" {
				return nil, fmt.Errorf("unknown fault %q (known: all, none, failpoints, provider, db, webhook, %s)", part, strings.Join(kindNames(), ", "))
			}
			group = []Kind{Kind(part)}
		}
		for _, k := range group {
			set[k] = on
		}
	}
	var out []Kind
	for _, k := range Kinds() {
		if set[k] {
			out = append(out, k)
		}
	}
	return out, nil
}

func kindNames() []string {
	var out []string
	for _, k := range Kinds() {
		out = append(out, string(k))
	}
	return out
}

// Targets of a run.
const (
	TargetPayd  = "payd"
	TargetNaive = "naive"
	TargetBoth  = "both"
)

// Defaults of Config.ClientTimeoutMin and ClientTimeoutMax.
const (
	DefaultClientTimeoutMin = 150 * time.Millisecond
	DefaultClientTimeoutMax = 600 * time.Millisecond
)

// DefaultProviderMaxDelay is the default of Config.ProviderMaxDelay.
const DefaultProviderMaxDelay = 15 * time.Second

// The range of a provider-late execution's delay, one per run: from
// lateMin to lateDelayMax(Config.ProviderMaxDelay).
const (
	lateMin     = 500 * time.Millisecond
	lateCeiling = 8 * time.Second
)

// lateDelayMax is the longest a late execution waits: half payd's bound on
// the provider's delay, so that the bound holds however the provider's
// own latency adds up, and at most lateCeiling, so that the drain stays
// short.
func lateDelayMax(providerMaxDelay time.Duration) time.Duration {
	return min(lateCeiling, providerMaxDelay/2)
}

// Modes of an optional part of payd (refunds, webhooks).
const (
	ModeAuto = "auto" // use it if this payd has it
	ModeOn   = "on"   // use it; fail if this payd lacks it
	ModeOff  = "off"  // do not use it
)

// Config sets a run up. A nil *Config, and every zero field, means the
// documented default.
type Config struct {
	// Command runs payd: an executable and the arguments that come before
	// payd's own (a subcommand and its flags). Required; payd chaos passes
	// its own executable.
	Command []string
	// Env is added to the environment of every process started. The
	// harness's PAYD_* variables are not passed on: each process gets its
	// settings as flags.
	Env []string

	// Target is TargetPayd, TargetNaive or TargetBoth: the same workload
	// and faults against payd, the naive processor, or both side by side.
	// Default TargetBoth.
	Target string
	// Duration is how long clients send new charges and faults are
	// injected, before the drain. Default 1m.
	Duration time.Duration
	// Seed decides every random choice. Default 0: a random seed, reported.
	Seed uint64
	// Replicas is how many payd processes run, 1 to 3. Default 3.
	Replicas int
	// DatabaseURL is a postgres:// URL, or "" for a SQLite file in
	// WorkDir. A run on PostgreSQL creates a database of its own on that
	// server (dropped after a passing run) unless ExistingDatabase is set.
	DatabaseURL string
	// ExistingDatabase runs in the database DatabaseURL names, which must
	// hold no payments yet, instead of creating one.
	ExistingDatabase bool

	// Rate is how many new charges clients start per second. Default 20.
	Rate float64
	// Concurrency bounds the charges in flight per target, from the first
	// request to the final status; arrivals wait for a free slot. Default
	// 300.
	Concurrency int
	// ClientTimeoutMin and ClientTimeoutMax bound each request's timeout,
	// drawn per charge. Defaults 150ms and 600ms: shorter than the
	// provider's latency when payd is asked to wait for the outcome.
	ClientTimeoutMin, ClientTimeoutMax time.Duration

	// Faults are the kinds injected. Default: every kind that applies
	// (database faults on PostgreSQL, webhook faults with webhooks).
	Faults []Kind
	// NoFaults injects none, whatever Faults says.
	NoFaults bool
	// FailpointRate is the probability with which each payd process dies
	// at each hit of an enabled failpoint. Default 0.01.
	FailpointRate float64
	// FaultInterval is the mean time between scheduled faults. Default 1s.
	FaultInterval time.Duration

	// Lease, ProviderTimeout and RetryBase are passed to payd serve.
	// Defaults 3s, 1s and 100ms. Lease must outlast ProviderTimeout.
	Lease, ProviderTimeout, RetryBase time.Duration
	// Workers is payd serve's --workers. Default 4.
	Workers int
	// ProviderMaxDelay is passed to payd serve as --provider-max-delay:
	// the longest the provider may take to act on a request it received.
	// The provider-late kind executes requests from 500ms to
	// min(8s, ProviderMaxDelay/2) after they arrive, so payd's bound holds
	// with room to spare, and the drain outlasts it. Default 15s; it must
	// be over 1s and shorter than DrainTimeout.
	ProviderMaxDelay time.Duration

	// Refunds and Webhooks are ModeAuto, ModeOn or ModeOff. Auto uses
	// refunds when POST /v1/charges/{id}/refunds exists, and webhooks when
	// payd serve --help lists --webhook-secret. Default ModeAuto.
	Refunds, Webhooks string

	// DrainTimeout bounds the drain. Default 3m.
	DrainTimeout time.Duration
	// WorkDir keeps the processes' logs and the SQLite file. Default: a
	// new temporary directory, removed after a passing run.
	WorkDir string
	// KeepWorkDir keeps WorkDir (and a database the run created) even
	// after a passing run.
	KeepWorkDir bool

	// Progress, if set, receives a progress line at most once a second
	// (with a carriage return when ProgressTTY, else a line every 10s) and
	// the run's milestones.
	Progress    io.Writer
	ProgressTTY bool
}

// resolve fills in the defaults and checks c.
func (c *Config) resolve() (Config, error) {
	var r Config
	if c != nil {
		r = *c
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&r.Duration, time.Minute)
	def(&r.ClientTimeoutMin, DefaultClientTimeoutMin)
	def(&r.ClientTimeoutMax, DefaultClientTimeoutMax)
	def(&r.FaultInterval, time.Second)
	def(&r.Lease, 3*time.Second)
	def(&r.ProviderTimeout, time.Second)
	def(&r.RetryBase, 100*time.Millisecond)
	def(&r.DrainTimeout, 3*time.Minute)
	def(&r.ProviderMaxDelay, DefaultProviderMaxDelay)
	if r.Target == "" {
		r.Target = TargetBoth
	}
	if r.Replicas == 0 {
		r.Replicas = 3
	}
	if r.Rate == 0 {
		r.Rate = 20
	}
	if r.Concurrency == 0 {
		r.Concurrency = 300
	}
	if r.FailpointRate == 0 {
		r.FailpointRate = 0.01
	}
	if r.Workers == 0 {
		r.Workers = 4
	}
	if r.Refunds == "" {
		r.Refunds = ModeAuto
	}
	if r.Webhooks == "" {
		r.Webhooks = ModeAuto
	}
	if r.Faults == nil {
		r.Faults = Kinds()
	}
	if r.NoFaults {
		r.Faults = []Kind{}
	}
	r.Env = slices.Clone(r.Env)
	r.Command = slices.Clone(r.Command)

	var errs []error
	switch r.Target {
	case TargetPayd, TargetNaive, TargetBoth:
	default:
		errs = append(errs, fmt.Errorf("target must be payd, naive or both, not %q", r.Target))
	}
	if len(r.Command) == 0 {
		errs = append(errs, errors.New("no command to run payd with: Command names the payd executable, which runs the replicas and the provider simulator"))
	}
	if r.Replicas < 1 || r.Replicas > 3 {
		errs = append(errs, fmt.Errorf("replicas must be 1 to 3, not %d", r.Replicas))
	}
	if r.Duration < 0 || r.DrainTimeout < 0 || r.FaultInterval < 0 {
		errs = append(errs, errors.New("durations must not be negative"))
	}
	if r.Rate < 0 || r.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("rate must be positive and concurrency at least 1 (got %g and %d)", r.Rate, r.Concurrency))
	}
	if !(r.FailpointRate > 0 && r.FailpointRate <= 1) {
		errs = append(errs, fmt.Errorf("failpoint rate must be within (0, 1], not %g", r.FailpointRate))
	}
	if r.ClientTimeoutMin <= 0 || r.ClientTimeoutMax < r.ClientTimeoutMin {
		errs = append(errs, fmt.Errorf("client timeouts must be positive, the maximum (%s) at least the minimum (%s)", r.ClientTimeoutMax, r.ClientTimeoutMin))
	}
	if r.ProviderMaxDelay <= 2*lateMin || r.ProviderMaxDelay >= r.DrainTimeout {
		errs = append(errs, fmt.Errorf("the provider's max delay (%s) must be over %s, so that late executions fit under half of it, and shorter than the drain (%s), which waits them out", r.ProviderMaxDelay, 2*lateMin, r.DrainTimeout))
	}
	if r.Lease <= r.ProviderTimeout {
		errs = append(errs, fmt.Errorf("lease (%s) must outlast the provider timeout (%s)", r.Lease, r.ProviderTimeout))
	}
	for _, m := range []struct{ name, v string }{{"refunds", r.Refunds}, {"webhooks", r.Webhooks}} {
		switch m.v {
		case ModeAuto, ModeOn, ModeOff:
		default:
			errs = append(errs, fmt.Errorf("%s must be auto, on or off, not %q", m.name, m.v))
		}
	}
	if r.DatabaseURL != "" && !isPostgres(r.DatabaseURL) {
		errs = append(errs, fmt.Errorf("database URL %q is not a postgres:// URL (leave it empty for SQLite)", r.DatabaseURL))
	}
	return r, errors.Join(errs...)
}

func isPostgres(url string) bool {
	return strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://")
}

// enabled reports whether kind k is injected in this run.
func (c *Config) enabled(k Kind) bool { return slices.Contains(c.Faults, k) }
