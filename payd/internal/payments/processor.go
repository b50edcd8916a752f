package payments

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/idemhq/idem/internal/waitlist"
	"github.com/idemhq/idem/payd/internal/provider"
)

// Defaults for ProcessorConfig.
const (
	DefaultWorkers      = 4
	DefaultLease        = 30 * time.Second
	DefaultPollInterval = 200 * time.Millisecond
	DefaultRetryBase    = time.Second
	DefaultRetryMax     = time.Minute
	DefaultMaxAttempts  = 8
	DefaultUnknownDelay = 2 * time.Second
	DefaultKeyWindow    = 24 * time.Hour
	// DefaultMaxProviderDelay is ProcessorConfig.MaxProviderDelay's
	// default: generous, as a provider documents no bound.
	DefaultMaxProviderDelay = time.Hour
)

// ProcessorConfig tunes a Processor. Zero fields mean the defaults.
type ProcessorConfig struct {
	// Workers is how many payments one process works on at once. Default 4.
	Workers int
	// Lease is how long a claim keeps a payment from other workers. It must
	// outlast a provider call; a worker that dies holding one is replaced
	// when it expires. Default 30s.
	Lease time.Duration
	// PollInterval is how often an idle worker looks for due payments, with
	// jitter; Notify wakes them sooner. Default 200ms.
	PollInterval time.Duration
	// RetryBase and RetryMax bound the backoff after a retryable provider
	// error: attempt n waits a random time in [0, min(RetryMax,
	// RetryBase·2^(n-1))] (full jitter). Defaults 1s and 1m.
	RetryBase, RetryMax time.Duration
	// MaxAttempts is how many provider calls a payment gets before it is
	// settled by a lookup of its provider key. Default 8.
	MaxAttempts int
	// UnknownDelay is how long an unknown outcome waits before the same
	// provider key is tried again. Default 2s.
	UnknownDelay time.Duration
	// KeyWindow is how long the provider honours an idempotency key. Past
	// it, less a margin, a payment is only ever looked up, never charged
	// again. Default 24h.
	KeyWindow time.Duration
	// MaxProviderDelay is the longest the provider may take to act on a
	// request it has received. A payment or refund whose lookup finds
	// nothing, once its attempts are spent, is failed only if no request
	// under its key can have reached the provider, or the last one that
	// may have did so longer ago than this; until then it stays unknown
	// and is looked up again. Default DefaultMaxProviderDelay (1h).
	MaxProviderDelay time.Duration
	// Failpoint, if set, is called at each named point of a task's work
	// (FailpointAfterClaim, FailpointAfterResponse). Only builds with the
	// chaos tag set it, to kill the process there.
	Failpoint func(point string)
	Logger    *slog.Logger
	Metrics   *Metrics
	// TracerProvider makes a span of each attempt, a child of the span
	// that accepted the payment or refund (see tracing.go). Default: none.
	TracerProvider trace.TracerProvider
}

// The points of a task's work where ProcessorConfig.Failpoint is called.
const (
	FailpointAfterClaim    = "after-claim"    // the claim is committed, the provider not yet called
	FailpointAfterResponse = "after-response" // the provider answered, the outcome is not recorded
)

func (c *ProcessorConfig) resolve() ProcessorConfig {
	var r ProcessorConfig
	if c != nil {
		r = *c
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if r.Workers <= 0 {
		r.Workers = DefaultWorkers
	}
	def(&r.Lease, DefaultLease)
	def(&r.PollInterval, DefaultPollInterval)
	def(&r.RetryBase, DefaultRetryBase)
	def(&r.RetryMax, DefaultRetryMax)
	def(&r.UnknownDelay, DefaultUnknownDelay)
	def(&r.KeyWindow, DefaultKeyWindow)
	def(&r.MaxProviderDelay, DefaultMaxProviderDelay)
	if r.MaxAttempts <= 0 {
		r.MaxAttempts = DefaultMaxAttempts
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
	if r.TracerProvider == nil {
		r.TracerProvider = noop.NewTracerProvider()
	}
	return r
}

// Processor works payments through the provider: claim, commit, call,
// classify, record with the fence checked.
type Processor struct {
	store    *Store
	provider provider.Provider
	cfg      ProcessorConfig
	tracer   trace.Tracer

	handoff       chan string             // payments accepted here (Dispatch), for workers to claim by id
	wake          chan struct{}           // a refund was created: look for due refunds
	refundCreated atomic.Bool             // since a worker last looked for due refunds
	settled       waitlist.List[*Payment] // by payment id: callers waiting for a final outcome

	stopClaims context.CancelFunc // ends the claim loops
	stopWork   context.CancelFunc // ends in-flight work, last resort
	done       sync.WaitGroup
}

// NewProcessor returns a Processor on store and prov. Start it.
func NewProcessor(store *Store, prov provider.Provider, cfg *ProcessorConfig) *Processor {
	c := cfg.resolve()
	return &Processor{
		store:    store,
		provider: prov,
		cfg:      c,
		tracer:   c.TracerProvider.Tracer(scope),
		handoff:  make(chan string, handoffQueue),
		wake:     make(chan struct{}, 1),
	}
}

// DispatchReserve is how long a payment accepted by a process with workers
// is left to them (NewPayment.Reserve) before any process's poll may claim
// it. It only has to outlast a hand-off; past it, the payment is due like
// any other, so one whose hand-off failed, or whose process died, waits
// this long plus a poll.
const DispatchReserve = time.Second

// handoffQueue bounds the payments waiting for a worker of this process;
// one dispatched to a full queue is left to the polls.
const handoffQueue = 1024

// Start starts the workers; it returns at once.
func (p *Processor) Start(ctx context.Context) {
	claimCtx, stopClaims := context.WithCancel(context.WithoutCancel(ctx))
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	p.stopClaims, p.stopWork = stopClaims, stopWork
	for range p.cfg.Workers {
		p.done.Add(1)
		go p.work(claimCtx, workCtx)
	}
}

// Stop stops claiming and waits for the payments in progress to be
// recorded, until ctx ends; then it cancels them (their leases expire and
// another worker finishes them). It is safe to call before Start and twice.
func (p *Processor) Stop(ctx context.Context) error {
	if p.stopClaims == nil {
		return nil
	}
	p.stopClaims()
	finished := make(chan struct{})
	go func() { p.done.Wait(); close(finished) }()
	select {
	case <-finished:
		p.stopWork()
		return nil
	case <-ctx.Done():
		p.stopWork()
		<-finished
		return ctx.Err()
	}
}

// failpoint calls the configured Failpoint at point, if any.
func (p *Processor) failpoint(point string) {
	if p.cfg.Failpoint != nil {
		p.cfg.Failpoint(point)
	}
}

// Dispatch hands payment id, just accepted with DispatchReserve and
// committed, to the next free worker, which claims it by id: no poll, and
// no worker racing others for the head of the queue. If the hand-off
// queue is full, a poll finds the payment once its reserve is over.
func (p *Processor) Dispatch(id string) {
	select {
	case p.handoff <- id:
	default:
	}
}

// NotifyRefund wakes a worker to look for due refunds: one was just
// created and committed.
func (p *Processor) NotifyRefund() {
	p.refundCreated.Store(true)
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// AwaitSettled registers a wait for payment id: the channel receives the
// payment as settled when this process records its final outcome, or nil
// when its worker was refused and the payment should be read again. Call
// the returned function when done waiting.
func (p *Processor) AwaitSettled(id string) (<-chan *Payment, func()) {
	ch := p.settled.Add(id)
	return ch, func() { p.settled.Remove(id, ch) }
}

// A lookup is why a worker looks for work.
type lookup struct {
	poll    bool   // its poll came due: anything due, refunds too
	refunds bool   // refunds may be due: look for them if no payment is
	id      string // a payment handed to it, to claim by id
}

// work claims and processes work until claimCtx ends: payments handed to
// it, and due work that polls find. A worker polls at least every
// PollInterval (with jitter), however many hand-offs come meanwhile, so
// retries, unknown outcomes, expired leases and refunds are never starved
// by new payments. It polls again at once while its last claim saw more
// work due; otherwise it waits for a hand-off or its next poll, instead of
// spending a query to find nothing. Refunds are looked for first on a
// poll, when a refund claim saw more due, or when NotifyRefund says one was
// created, so a steady stream of due payments never starves them
// (TestRefundsAreNotStarvedByPayments).
func (p *Processor) work(claimCtx, workCtx context.Context) {
	defer p.done.Done()
	why := lookup{poll: true}
	var nextPoll time.Time
	for claimCtx.Err() == nil {
		if why.poll {
			nextPoll = time.Now().Add(p.cfg.PollInterval/2 + rand.N(p.cfg.PollInterval))
		}
		t, err := p.claim(claimCtx, why)
		if err != nil && claimCtx.Err() == nil {
			p.cfg.Logger.Warn("payd: claiming due work failed; retrying", slog.Any("error", err))
		}
		if t != nil {
			p.process(workCtx, t)
			if t.moreDue { // at once, and as a poll when one is due
				why = lookup{refunds: t.kind == "refund", poll: !time.Now().Before(nextPoll)}
				continue
			}
		}
		why = p.idle(claimCtx, nextPoll)
	}
}

// claim claims the payment handed off; else, on a poll or when refunds may
// be due, a due refund before a due payment; else a due payment. The
// claim's lease, by this process's
// clock, starts before the claim is sent: it ends no later than the
// database's.
func (p *Processor) claim(ctx context.Context, why lookup) (*task, error) {
	leaseEnd := time.Now().Add(p.cfg.Lease)
	if why.id != "" {
		c, err := p.store.ClaimPending(ctx, why.id, p.cfg.Lease)
		return p.paymentTask(c, leaseEnd), err
	}
	refundsFirst := why.poll || why.refunds || p.refundCreated.Swap(false)
	if refundsFirst {
		if rc, err := p.store.ClaimDueRefund(ctx, p.cfg.Lease); rc != nil || err != nil {
			return p.refundTask(rc, leaseEnd), err
		}
	}
	c, err := p.store.ClaimDue(ctx, p.cfg.Lease)
	return p.paymentTask(c, leaseEnd), err
}

// idle waits for a hand-off or a wake-up, until the next poll is due.
func (p *Processor) idle(ctx context.Context, nextPoll time.Time) lookup {
	wait := time.Until(nextPoll)
	if wait <= 0 {
		return lookup{poll: true}
	}
	select {
	case id := <-p.handoff:
		return lookup{id: id}
	default:
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case id := <-p.handoff:
		return lookup{id: id}
	case <-p.wake:
	case <-t.C:
		return lookup{poll: true}
	case <-ctx.Done():
	}
	return lookup{}
}
