package idem

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/idemhq/idem/observe"
	"github.com/idemhq/idem/store"
)

// Engine runs functions at most once per key across every process that
// shares its store, records each outcome and replays it. It is safe for
// concurrent use; create one per store and namespace and share it.
type Engine struct {
	store store.Store
	cfg   Config
	codes []string // cfg.Errors' codes, sorted

	ownerPrefix string // random per engine; owners are ownerPrefix + sequence
	ownerSeq    atomic.Uint64

	flights flights
	born    time.Time // New's clock reading; see now
}

// now reads the monotonic clock only, at about half the cost of time.Now,
// which matters on the replay path. The result is good for durations and
// deadlines, not for display.
func (e *Engine) now() time.Time { return e.born.Add(time.Since(e.born)) }

// New returns an Engine on s: memstore for one process, or the SQLite,
// PostgreSQL or Redis store. A nil cfg means all defaults.
func New(s store.Store, cfg *Config) (*Engine, error) {
	if s == nil {
		return nil, errors.New("idem: New needs a Store (memstore.New() for one process)")
	}
	c, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	var id [12]byte
	rand.Read(id[:])
	return &Engine{
		store:       s,
		cfg:         c,
		codes:       sortedCodes(c.Errors),
		ownerPrefix: base64.RawURLEncoding.EncodeToString(id[:]) + ".",
		born:        time.Now(),
	}, nil
}

// RunOptions tune one call. A nil *RunOptions means all defaults.
type RunOptions struct {
	// Fingerprint identifies the request behind the key, such as a SHA-256
	// of its body. A key reused with a different fingerprint gets
	// ErrMismatch. At most 255 bytes: a digest, not the request. Default "".
	Fingerprint string

	// Retryable reports whether an error from fn is transient. A transient
	// error is returned to this caller only: the claim is released, nothing
	// is recorded, and the next call runs fn again. Nil means every error is
	// final, recorded and replayed. Either way, an error returned while the
	// caller's context is done is treated as transient: the caller gave up,
	// the outcome says nothing about the request.
	Retryable func(error) bool

	// FailFast returns ErrInFlight at once when another call holds the key,
	// instead of waiting for its outcome.
	FailFast bool

	// MaxWait overrides Config.MaxWait for this call when positive.
	MaxWait time.Duration
}

// Result is the outcome of a call: Result[[]byte] from Run and RunTx,
// Result[T] from Do and DoTx.
type Result[T any] struct {
	// Value is what fn returned. The zero value when fn returned an error.
	Value T
	// Replayed is set when the outcome came from the store or from another
	// caller, not from this call's fn.
	Replayed bool
}

// Run calls fn at most once per key across every process sharing the
// engine's store, records its outcome and returns it, now and to every later
// or concurrent caller within retention.
//
// The caller that runs fn gets fn's value and error as returned. Others get
// Replayed results: the same value, or a *ReplayedError carrying the error's
// code and message. Concurrent callers wait for the holder's outcome, up to
// MaxWait, and take the key over if the holder's lease expires. Concurrent
// calls in one process with the same key and fingerprint share one claim.
//
// fn runs under a lease that is renewed while it runs; its context carries
// the lease (LeaseFrom) and is cancelled, with cause ErrLeaseLost, if the
// lease cannot be kept. See the package documentation for the guarantees
// and what they need from fn.
func (e *Engine) Run(ctx context.Context, key string, fn func(context.Context) ([]byte, error), opts *RunOptions) (Result[[]byte], error) {
	c := call{fn: fn}
	if err := e.prepare(&c, key, opts); err != nil {
		return result{}, err
	}
	return e.run(ctx, &c)
}

// prepare checks key and options, before any store access, and derives c's
// store key.
func (e *Engine) prepare(c *call, key string, opts *RunOptions) error {
	if err := validateKey(key); err != nil {
		return err
	}
	if opts != nil {
		c.opts = *opts
	}
	if len(c.opts.Fingerprint) > maxFingerprintLen {
		return fmt.Errorf("%w: fingerprint is %d bytes, at most %d allowed", ErrInvalidKey, len(c.opts.Fingerprint), maxFingerprintLen)
	}
	c.maxWait = c.opts.MaxWait
	if c.maxWait <= 0 {
		c.maxWait = e.cfg.MaxWait
	}
	c.slot, c.key = storeKey(e.cfg.Namespace, key)
	return nil
}

// run leads c's flight, or waits for this process's leader of the key.
func (e *Engine) run(ctx context.Context, c *call) (result, error) {
	for {
		f, leader := e.flights.join(c)
		if leader {
			return e.lead(ctx, c, f)
		}
		if res, err, done := e.await(ctx, c, f); done {
			return res, err
		}
	}
}

// call is one Run or RunTx in progress.
type call struct {
	slot uint64 // flights key: 64 bits of the key's digest
	key  string // the store key
	fn   func(context.Context) ([]byte, error)
	tx   txRunner // set by RunTx, in place of fn
	opts RunOptions
	// owner is the owner token for c's next claim, "" until one is needed.
	// Owners must be unique per acquired lease only, so a token whose claim
	// did not acquire is handed on to the next call (flights keep it), which
	// keeps allocation off the replay path.
	owner   string
	maxWait time.Duration
	// waitUntil ends the wait budget; set when the call first waits, which
	// keeps a clock read off the replay path.
	waitUntil time.Time
}

// waitBudget returns how much longer c may wait, starting its budget on
// first use.
func (c *call) waitBudget() time.Duration {
	if c.waitUntil.IsZero() {
		c.waitUntil = time.Now().Add(c.maxWait)
	}
	return time.Until(c.waitUntil)
}

// lead runs c against the store and hands its outcome to f's waiters, also
// when fn panics.
func (e *Engine) lead(ctx context.Context, c *call, f *flight) (res result, err error) {
	shared := false
	defer func() { e.flights.land(c, f, res, err, shared) }()
	if c.tx != nil {
		// By value: a pointer passed through an interface escapes, and the
		// replay path of Run must not allocate for RunTx's sake.
		cv := *c
		c.owner = "" // the copy's claims may spend it, even if fn panics
		res, err, shared = c.tx.execute(ctx, e, cv)
	} else {
		res, err, shared = e.execute(ctx, c)
	}
	return res, err
}

// await waits for f's leader. done is false when the leader's outcome was
// not recorded (a transient error, a panic, a store failure): the caller
// should try again itself.
func (e *Engine) await(ctx context.Context, c *call, f *flight) (res result, err error, done bool) {
	if c.opts.FailFast {
		e.observe(ctx, observe.Event{Kind: observe.InFlight, Key: c.key})
		return result{}, ErrInFlight, true
	}
	start := time.Now()
	timer := time.NewTimer(c.waitBudget())
	defer timer.Stop()
	select {
	case <-f.done:
	case <-ctx.Done():
		return result{}, ctx.Err(), true
	case <-timer.C:
		e.observe(ctx, observe.Event{Kind: observe.InFlight, Key: c.key})
		return result{}, ErrInFlight, true
	}
	e.observe(ctx, observe.Event{Kind: observe.Waited, Key: c.key, Duration: time.Since(start)})
	if !f.shared {
		return result{}, nil, false
	}
	if f.err != nil {
		// As a caller in another process would: the recorded error, not
		// the leader's value (TestWaiterInProcessGetsReplayedError). A
		// leader that replayed holds one already, code and all.
		if re, ok := f.err.(*ReplayedError); ok {
			return result{Replayed: true}, re, true
		}
		return result{Replayed: true}, e.replayedError(e.errorOutcome(f.err)), true
	}
	return result{Value: slices.Clone(f.res.Value), Replayed: true}, nil, true
}

// execute claims c's key and runs, replays or waits until it has an outcome.
// shared reports whether the outcome is recorded, so waiters may take it.
func (e *Engine) execute(ctx context.Context, c *call) (res result, err error, shared bool) {
	for {
		p := e.claimParams(c)
		cr, err := e.store.Claim(ctx, p)
		if err != nil {
			// The claim may have landed, so the owner is spent.
			c.owner = ""
			return result{}, e.storeFailed(ctx, "claim", c.key, err), false
		}
		if cr.Status == store.ClaimAcquired {
			c.owner = ""
		}
		switch cr.Status {
		case store.ClaimAcquired:
			return e.hold(ctx, c, cr, p.Sent)
		case store.ClaimCompleted:
			return e.replay(ctx, c.key, cr.Outcome)
		case store.ClaimMismatch:
			e.observe(ctx, observe.Event{Kind: observe.Mismatch, Key: c.key})
			return result{}, ErrMismatch, true
		case store.ClaimInFlight:
			if err := e.wait(ctx, c, cr); err != nil {
				return result{}, err, false
			}
		default:
			return result{}, e.storeFailed(ctx, "claim", c.key, fmt.Errorf("invalid claim status %d", cr.Status)), false
		}
	}
}

// claimParams returns the arguments of c's next claim, to be sent at once:
// they carry the lease's anchor, read now. The caller must clear c.owner
// once the owner is spent: when the claim acquires, or fails and so may
// have acquired.
func (e *Engine) claimParams(c *call) store.ClaimParams {
	if c.owner == "" {
		c.owner = e.ownerPrefix + strconv.FormatUint(e.ownerSeq.Add(1), 36)
	}
	return store.ClaimParams{
		Key:         c.key,
		Owner:       c.owner,
		Fingerprint: c.opts.Fingerprint,
		LeaseTTL:    e.cfg.LeaseTTL,
		Retention:   e.cfg.Retention,
		Sent:        e.now(),
	}
}

// minWait keeps a store that reports a zero RetryAfter from turning the
// wait loop into a spin.
const minWait = time.Millisecond

// wait blocks until the holder reported by cr completes, releases or lets
// its lease expire, or c's wait budget runs out (ErrInFlight).
func (e *Engine) wait(ctx context.Context, c *call, cr store.ClaimResult) error {
	if c.opts.FailFast {
		e.observe(ctx, observe.Event{Kind: observe.InFlight, Key: c.key, Fence: cr.Lease.Fence})
		return ErrInFlight
	}
	budget := c.waitBudget()
	if budget <= 0 {
		e.observe(ctx, observe.Event{Kind: observe.InFlight, Key: c.key, Fence: cr.Lease.Fence})
		return ErrInFlight
	}
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, min(budget, max(cr.RetryAfter, minWait)))
	err := e.store.Wait(wctx, c.key, cr.Lease.Fence)
	cancel()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return e.storeFailed(ctx, "wait", c.key, err)
	}
	e.observe(ctx, observe.Event{Kind: observe.Waited, Key: c.key, Fence: cr.Lease.Fence, Duration: time.Since(start)})
	return nil
}

// replay returns a recorded outcome.
func (e *Engine) replay(ctx context.Context, key string, b []byte) (result, error, bool) {
	o, err := decodeOutcome(b)
	if err != nil {
		return result{}, e.storeFailed(ctx, "claim", key, err), false
	}
	e.observe(ctx, observe.Event{Kind: observe.Replayed, Key: key})
	if o.isErr {
		return result{Replayed: true}, e.replayedError(o), true
	}
	return result{Value: o.value, Replayed: true}, nil, true
}

// errDidNotReturn is the cause of a release after fn panicked or called
// runtime.Goexit.
var errDidNotReturn = errors.New("idem: fn did not return (panic or runtime.Goexit)")

// hold runs fn under the lease in cr and records its outcome.
func (e *Engine) hold(ctx context.Context, c *call, cr store.ClaimResult, claimSent time.Time) (result, error, bool) {
	l := cr.Lease
	if cr.TookOver {
		e.observe(ctx, observe.Event{Kind: observe.Takeover, Key: l.Key, Fence: l.Fence})
		e.cfg.Logger.LogAttrs(ctx, slog.LevelInfo, "idem: took over an expired lease",
			slog.String("key", l.Key), slog.Int64("fence", l.Fence))
	}
	detached := context.WithoutCancel(ctx)
	hb := e.startHeartbeat(ctx, detached, l, claimSent)
	returned := false
	defer func() {
		if !returned {
			// fn panicked or called runtime.Goexit. Free the key for a retry
			// and let the panic go on with its own stack.
			hb.stop()
			e.release(detached, l, errDidNotReturn)
		}
	}()
	start := time.Now()
	value, fnErr := c.fn(hb)
	returned = true
	took := time.Since(start)

	if hb.stop() {
		e.leaseLost(ctx, l, took, fnErr)
		return result{}, ErrLeaseLost, false
	}
	if fnErr != nil && (ctx.Err() != nil || c.opts.Retryable != nil && c.opts.Retryable(fnErr)) {
		e.release(detached, l, fnErr)
		e.unencodable(detached, l, took, fnErr)
		return result{}, fnErr, false
	}
	o := outcome{value: value}
	if fnErr != nil {
		o = e.errorOutcome(fnErr)
	}
	bctx, cancel := e.bounded(detached)
	err := e.store.Complete(bctx, l, o.encode())
	cancel()
	switch {
	case errors.Is(err, ErrLeaseLost):
		e.leaseLost(ctx, l, took, fnErr)
		return result{}, ErrLeaseLost, false
	case err != nil:
		return result{Value: value}, e.notRecorded(ctx, "complete", l, took, err), false
	}
	e.observe(ctx, observe.Event{Kind: observe.Executed, Key: l.Key, Fence: l.Fence, Duration: took, Err: fnErr})
	return result{Value: value}, fnErr, true
}

// release frees l's key without recording an outcome, so the next call runs
// fn again. cause says why, for observers. detached must not be cancelled
// with the caller.
func (e *Engine) release(detached context.Context, l store.Lease, cause error) {
	ctx, cancel := e.bounded(detached)
	err := e.store.Release(ctx, l)
	cancel()
	e.observe(detached, observe.Event{Kind: observe.Released, Key: l.Key, Fence: l.Fence, Err: cause})
	if err != nil && !errors.Is(err, ErrLeaseLost) {
		e.observe(detached, observe.Event{Kind: observe.StoreError, Key: l.Key, Fence: l.Fence, Err: err})
		e.cfg.Logger.LogAttrs(detached, slog.LevelWarn, "idem: release failed; the key stays in flight until its lease expires",
			slog.String("key", l.Key), slog.Int64("fence", l.Fence), slog.Any("error", err))
	}
}

func (e *Engine) leaseLost(ctx context.Context, l store.Lease, took time.Duration, fnErr error) {
	e.observe(ctx, observe.Event{Kind: observe.LeaseLost, Key: l.Key, Fence: l.Fence, Duration: took, Err: fnErr})
	e.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "idem: lease lost while fn ran; its outcome was discarded",
		slog.String("key", l.Key), slog.Int64("fence", l.Fence), slog.Duration("fn_duration", took))
}

// storeFailed builds the StoreError for op, which failed before fn ran,
// and reports it, unless the caller's own cancellation caused it.
func (e *Engine) storeFailed(ctx context.Context, op, key string, err error) error {
	se := &StoreError{Op: op, Key: key, Err: err}
	if ctx.Err() != nil {
		return se
	}
	e.observe(ctx, observe.Event{Kind: observe.StoreError, Key: key, Err: se})
	e.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "idem: store failed before fn ran; fn did not run",
		slog.String("op", op), slog.String("key", key), slog.Any("error", err))
	return se
}

// notRecorded builds the StoreError for op, which failed to record the
// outcome of fn, run under l for took, and reports it: the error to alert
// on.
func (e *Engine) notRecorded(ctx context.Context, op string, l store.Lease, took time.Duration, err error) error {
	se := &StoreError{Op: op, Key: l.Key, Executed: true, Err: err}
	e.reportNotRecorded(ctx, op, l, took, se)
	return se
}

// unencodable reports fnErr, which released l's claim, as a lost outcome
// if it is Do's value that could not be encoded: fn ran, and its outcome
// cannot be recorded (TestDoUnencodableValueIsNotRecorded).
func (e *Engine) unencodable(ctx context.Context, l store.Lease, took time.Duration, fnErr error) {
	if _, ok := errors.AsType[*encodeError](fnErr); ok {
		e.reportNotRecorded(ctx, "encode", l, took, fnErr)
	}
}

func (e *Engine) reportNotRecorded(ctx context.Context, op string, l store.Lease, took time.Duration, err error) {
	e.observe(ctx, observe.Event{Kind: observe.NotRecorded, Key: l.Key, Fence: l.Fence, Duration: took, Err: err})
	e.cfg.Logger.LogAttrs(ctx, slog.LevelError, "idem: fn ran but its outcome was not recorded; a retry may run it again",
		slog.String("op", op), slog.String("key", l.Key), slog.Int64("fence", l.Fence), slog.Any("error", err))
}

// bounded bounds bookkeeping that must run even when the caller's context is
// done: detached is the caller's context without its cancellation.
func (e *Engine) bounded(detached context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(detached, e.cfg.StoreTimeout)
}

// result is what the engine passes around: Run's Result.
type result = Result[[]byte]

func (e *Engine) observe(ctx context.Context, ev observe.Event) {
	if e.cfg.Observer != nil {
		e.cfg.Observer(ctx, ev)
	}
}
