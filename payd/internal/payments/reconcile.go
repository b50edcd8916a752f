package payments

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/idemhq/idem/payd/internal/database"
	"github.com/idemhq/idem/payd/internal/provider"
)

// ReconciliationRun is one comparison of the provider's charges and
// refunds with payd's payments and refunds over a window of creation
// times.
type ReconciliationRun struct {
	ID              string    `json:"id"`
	StartedAt       time.Time `json:"started_at"`
	FinishedAt      time.Time `json:"finished_at"`
	WindowFrom      time.Time `json:"window_from"`
	WindowTo        time.Time `json:"window_to"`
	ProviderCharges int       `json:"provider_charges"`
	ProviderRefunds int       `json:"provider_refunds"`
	Matched         int       `json:"matched"`
	// Fixed counts payments and refunds settled to the provider's
	// outcome; each fix is in the audit log.
	Fixed int `json:"fixed"`
	// Mismatches counts the keys found disagreeing, those held included.
	Mismatches int `json:"mismatches"`
}

// Defaults for ReconcilerConfig.
const (
	DefaultReconcileInterval   = time.Minute
	DefaultReconcileWindow     = 24 * time.Hour
	DefaultReconcileGrace      = time.Minute
	DefaultReconcileStaleAfter = 3
)

// reconcilePage is how many keys of a listing are looked up in payd's
// database at once.
const reconcilePage = 100

// ReconcilerConfig tunes a Reconciler. Zero fields mean the defaults.
type ReconcilerConfig struct {
	// Interval is the time between runs, with jitter. Default 1m.
	Interval time.Duration
	// Window is how far back each run looks. Default 24h.
	Window time.Duration
	// Grace leaves out what was created in the last Grace, which workers
	// are likely still settling. Default 1m.
	Grace time.Duration
	// StaleAfter is how many Intervals may pass without a run that
	// succeeded before the Reconciler says so, in a log line at error
	// level and the payd_reconciliation_stale gauge. Default 3.
	StaleAfter int
	Logger     *slog.Logger
	// Registerer, if set, gets the Reconciler's metrics.
	Registerer prometheus.Registerer
	// TracerProvider makes a span of each run. Default: none.
	TracerProvider trace.TracerProvider
}

// Reconciler compares the provider's charges and refunds with payd's
// over a window, periodically, a page of the provider's listing at a
// time. A payment or refund not final yet whose record the provider has
// decided is settled to match it (a safe fix, audited) if the record is
// the one payd asked for, and held if not; every other disagreement is
// recorded as a Mismatch. A run resolves only the mismatches about keys it
// looked at and found consistent (TestReconciliationResolvesOnlyWhatItChecked).
// Runs from several replicas at once are safe: every write is idempotent.
type Reconciler struct {
	store    *Store
	provider provider.Provider
	cfg      ReconcilerConfig
	metrics  reconcilerMetrics
	tracer   trace.Tracer

	stop context.CancelFunc
	done sync.WaitGroup
}

type reconcilerMetrics struct {
	lastSuccess prometheus.Gauge
	stale       prometheus.Gauge
	runs        *prometheus.CounterVec
}

// NewReconciler returns a Reconciler; Start runs it periodically, RunOnce
// once.
func NewReconciler(store *Store, prov provider.Provider, cfg *ReconcilerConfig) *Reconciler {
	var c ReconcilerConfig
	if cfg != nil {
		c = *cfg
	}
	if c.Interval <= 0 {
		c.Interval = DefaultReconcileInterval
	}
	if c.Window <= 0 {
		c.Window = DefaultReconcileWindow
	}
	if c.Grace <= 0 {
		c.Grace = DefaultReconcileGrace
	}
	if c.StaleAfter <= 0 {
		c.StaleAfter = DefaultReconcileStaleAfter
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.TracerProvider == nil {
		c.TracerProvider = noop.NewTracerProvider()
	}
	r := &Reconciler{store: store, provider: prov, cfg: c, tracer: c.TracerProvider.Tracer(scope), metrics: reconcilerMetrics{
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "payd_reconciliation_last_success_timestamp_seconds",
			Help: "When this process's last reconciliation run succeeded (Unix seconds); 0 before the first.",
		}),
		stale: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "payd_reconciliation_stale",
			Help: "1 when no reconciliation run of this process has succeeded within --reconcile-stale-after intervals.",
		}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "payd_reconciliation_runs_total",
			Help: "Reconciliation runs, by result: ok or failed.",
		}, []string{"result"}),
	}}
	if c.Registerer != nil {
		c.Registerer.MustRegister(r.metrics.lastSuccess, r.metrics.stale, r.metrics.runs)
	}
	return r
}

// Start runs reconciliation every Interval until Stop.
func (r *Reconciler) Start(ctx context.Context) {
	ctx, r.stop = context.WithCancel(context.WithoutCancel(ctx))
	r.done.Go(func() {
		lastOK := time.Now()
		for {
			t := time.NewTimer(r.cfg.Interval/2 + rand.N(r.cfg.Interval))
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			// A run that outlasts the staleness bound is cut short: it
			// would keep the stale signal from firing.
			runCtx, cancel := context.WithTimeout(ctx, time.Duration(r.cfg.StaleAfter)*r.cfg.Interval)
			run, err := r.RunOnce(runCtx)
			cancel()
			if ctx.Err() != nil {
				return
			}
			r.ran(run, err, &lastOK)
		}
	})
}

// ran reports a run: its figures, or its failure, and whether runs have
// been failing for longer than StaleAfter intervals
// (TestReconcilerSaysWhenItIsStale).
func (r *Reconciler) ran(run *ReconciliationRun, err error, lastOK *time.Time) {
	m, log := &r.metrics, r.cfg.Logger
	if err == nil {
		*lastOK = time.Now()
		m.runs.WithLabelValues("ok").Inc()
		m.lastSuccess.Set(float64(lastOK.Unix()))
		m.stale.Set(0)
		log.Info("payd: reconciliation run", slog.Int("provider_charges", run.ProviderCharges), slog.Int("provider_refunds", run.ProviderRefunds),
			slog.Int("matched", run.Matched), slog.Int("fixed", run.Fixed), slog.Int("mismatches", run.Mismatches))
		return
	}
	m.runs.WithLabelValues("failed").Inc()
	since := time.Since(*lastOK)
	if since > time.Duration(r.cfg.StaleAfter)*r.cfg.Interval {
		m.stale.Set(1)
		log.Error("payd: no reconciliation run has succeeded for too long: mismatches with the provider go unnoticed; see the error",
			slog.Duration("since", since.Round(time.Second)), slog.Int("intervals", r.cfg.StaleAfter), slog.Any("error", err))
		return
	}
	log.Warn("payd: reconciliation failed; the next run tries again", slog.Any("error", err))
}

// Stop ends the periodic runs, waiting for one in progress.
func (r *Reconciler) Stop() {
	if r.stop != nil {
		r.stop()
		r.done.Wait()
	}
}

// runOnce is RunOnce, in its span.
func (r *Reconciler) runOnce(ctx context.Context) (*ReconciliationRun, error) {
	s := r.store
	now, err := s.Now(ctx)
	if err != nil {
		return nil, err
	}
	run := &ReconciliationRun{ID: newID("rec_"), StartedAt: now, WindowTo: now.Add(-r.cfg.Grace)}
	run.WindowFrom = run.WindowTo.Add(-r.cfg.Window)
	open, err := s.OpenMismatches(ctx)
	if err != nil {
		return nil, err
	}
	rr := &reconciliation{Reconciler: r, run: run, why: "reconciliation " + run.ID, open: map[string][]Mismatch{}}
	for _, m := range open {
		rr.open[m.ProviderKey] = append(rr.open[m.ProviderKey], m)
	}
	if err := rr.charges(ctx); err != nil {
		return nil, err
	}
	if err := rr.refunds(ctx); err != nil {
		return nil, err
	}
	if run.FinishedAt, err = s.Now(ctx); err != nil {
		return nil, err
	}
	err = s.execWrite(ctx, s.sql.insertRun, run.ID, millis(run.StartedAt), millis(run.FinishedAt), millis(run.WindowFrom),
		millis(run.WindowTo), run.ProviderCharges, run.ProviderRefunds, run.Matched, run.Fixed, run.Mismatches)
	return run, wrap("record reconciliation run", err)
}

// reconciliation is one run in progress.
type reconciliation struct {
	*Reconciler
	run  *ReconciliationRun
	why  string
	open map[string][]Mismatch // by provider key, as the run started
}

// charges looks at every provider charge in the window, a page at a time,
// then at payd's succeeded payments in the window that the listing did
// not show succeeded.
func (rr *reconciliation) charges(ctx context.Context) error {
	s, charged := rr.store, map[string]bool{}
	var page []provider.Charge
	flush := func() error {
		ours, err := byKeys(ctx, s, s.sql.paymentsByKeys, page, func(ch provider.Charge) string { return ch.IdempotencyKey },
			func(row database.Row) (*Payment, error) { return scanPayment(row) }, func(p *Payment) string { return p.ProviderKey })
		if err != nil {
			return err
		}
		for _, ch := range page {
			if err := rr.lookedAtCharge(ctx, ch, ours[ch.IdempotencyKey]); err != nil {
				return fmt.Errorf("payments: reconcile charge %s: %w", ch.ID, err)
			}
		}
		page = page[:0]
		return nil
	}
	for ch, err := range rr.provider.Charges(ctx, rr.run.WindowFrom, rr.run.WindowTo) {
		if err != nil {
			return fmt.Errorf("payments: reconcile: list the provider's charges: %w", err)
		}
		rr.run.ProviderCharges++
		if ch.Status == provider.StatusSucceeded {
			charged[ch.IdempotencyKey] = true
		}
		if page = append(page, ch); len(page) == reconcilePage {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	// A succeeded payment whose charge the listing did not show succeeded:
	// the charge may have been made after the window ended, so it is
	// looked up before it is called a mismatch.
	return eachSucceeded(ctx, s, s.sql.succeededPayments, rr.run, func(row database.Row) (*Payment, error) { return scanPayment(row) },
		func(p *Payment) (time.Time, string) { return p.CreatedAt, p.ID },
		func(p *Payment) error {
			if charged[p.ProviderKey] {
				return nil
			}
			ch, err := rr.provider.ChargeByKey(ctx, p.ProviderKey)
			switch {
			case errors.Is(err, provider.ErrNotFound):
				m := &Mismatch{Kind: MismatchMissingCharge, ProviderKey: p.ProviderKey, AccountID: p.AccountID, PaymentID: p.ID, SubjectAt: p.CreatedAt,
					Detail: fmt.Sprintf("payment %s of %d %s succeeded; the provider has no charge under key %s", p.ID, p.Amount, p.Currency, p.ProviderKey)}
				return rr.found(ctx, p.ProviderKey, chargeKinds, reckonMismatch, m, s.record(ctx, m))
			case err != nil:
				return fmt.Errorf("payments: reconcile payment %s: %w", p.ID, err)
			}
			return rr.lookedAtCharge(ctx, ch, p)
		})
}

func (rr *reconciliation) lookedAtCharge(ctx context.Context, ch provider.Charge, p *Payment) error {
	res, m, err := rr.store.reckonCharge(ctx, rr.provider, ch, p, "reconciliation", rr.why)
	return rr.found(ctx, ch.IdempotencyKey, chargeKinds, res, m, err)
}

// refunds is charges for refunds.
func (rr *reconciliation) refunds(ctx context.Context) error {
	s, refunded := rr.store, map[string]bool{}
	var page []provider.Refund
	flush := func() error {
		ours, err := byKeys(ctx, s, s.sql.refundsByKeys, page, func(pr provider.Refund) string { return pr.IdempotencyKey },
			func(row database.Row) (*Refund, error) { return scanRefund(row) }, func(r *Refund) string { return r.ProviderKey })
		if err != nil {
			return err
		}
		for _, pr := range page {
			if err := rr.lookedAtRefund(ctx, pr, ours[pr.IdempotencyKey]); err != nil {
				return fmt.Errorf("payments: reconcile refund %s: %w", pr.ID, err)
			}
		}
		page = page[:0]
		return nil
	}
	for pr, err := range rr.provider.Refunds(ctx, rr.run.WindowFrom, rr.run.WindowTo) {
		if err != nil {
			return fmt.Errorf("payments: reconcile: list the provider's refunds: %w", err)
		}
		rr.run.ProviderRefunds++
		if pr.Status == provider.StatusSucceeded {
			refunded[pr.IdempotencyKey] = true
		}
		if page = append(page, pr); len(page) == reconcilePage {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	return eachSucceeded(ctx, s, s.sql.succeededRefunds, rr.run, func(row database.Row) (*Refund, error) { return scanRefund(row) },
		func(r *Refund) (time.Time, string) { return r.CreatedAt, r.ID },
		func(r *Refund) error {
			if refunded[r.ProviderKey] {
				return nil
			}
			pr, err := rr.provider.RefundByKey(ctx, r.ProviderKey)
			switch {
			case errors.Is(err, provider.ErrNotFound):
				m := &Mismatch{Kind: MismatchMissingRefund, ProviderKey: r.ProviderKey, AccountID: r.AccountID, PaymentID: r.PaymentID,
					RefundID: r.ID, SubjectAt: r.CreatedAt,
					Detail: fmt.Sprintf("refund %s of %d on charge %s succeeded; the provider has no refund under key %s", r.ID, r.Amount, r.ChargeID, r.ProviderKey)}
				return rr.found(ctx, r.ProviderKey, refundKinds, reckonMismatch, m, s.record(ctx, m))
			case err != nil:
				return fmt.Errorf("payments: reconcile refund %s: %w", r.ID, err)
			}
			return rr.lookedAtRefund(ctx, pr, r)
		})
}

func (rr *reconciliation) lookedAtRefund(ctx context.Context, pr provider.Refund, r *Refund) error {
	res, m, err := rr.store.reckonRefund(ctx, rr.provider, pr, r, "reconciliation", rr.why)
	return rr.found(ctx, pr.IdempotencyKey, refundKinds, res, m, err)
}

// found counts what a look at key found and resolves the open mismatches
// about key, of the kinds such a look decides, that it did not find again.
func (rr *reconciliation) found(ctx context.Context, key string, kinds []string, res reckoning, m *Mismatch, err error) error {
	if err != nil {
		return err
	}
	found := ""
	switch res {
	case reckonMatched:
		rr.run.Matched++
	case reckonSettled:
		rr.run.Fixed++
	case reckonHeld, reckonMismatch:
		rr.run.Mismatches++
		found = m.Kind
	case reckonIgnored:
		return nil // nothing decided about the key
	}
	if len(rr.open[key]) == 0 {
		return nil
	}
	delete(rr.open, key) // looked at once per run
	return rr.store.db.Write(ctx, func(ctx context.Context) error {
		return rr.store.resolveMismatches(ctx, rr.store.db, key, kinds, found)
	})
}

// byKeys reads payd's rows for the keys of a page of a provider listing,
// by key.
func byKeys[P, T any](ctx context.Context, s *Store, stmt string, page []P, keyOf func(P) string,
	scan func(database.Row) (*T, error), rowKey func(*T) string) (map[string]*T, error) {
	out := map[string]*T{}
	if len(page) == 0 {
		return out, nil
	}
	keys := make([]string, len(page))
	for i, v := range page {
		keys[i] = keyOf(v)
	}
	arg, _ := json.Marshal(keys) // strings always encode
	rs, err := s.db.Query(ctx, stmt, string(arg))
	if err != nil {
		return nil, wrap("read by provider keys", err)
	}
	defer rs.Close()
	for rs.Next() {
		t, err := scan(rs)
		if err != nil {
			return nil, wrap("read by provider keys", err)
		}
		out[rowKey(t)] = t
	}
	return out, wrap("read by provider keys", rs.Err())
}

// eachSucceeded calls f on each row stmt lists for the run's window, a
// page at a time in (created_at, id) order. A page is read whole before f
// runs, so f may write.
func eachSucceeded[T any](ctx context.Context, s *Store, stmt string, run *ReconciliationRun, scan func(database.Row) (*T, error),
	cursor func(*T) (time.Time, string), f func(*T) error) error {
	afterAt, afterID := int64(-1), ""
	for {
		rs, err := s.db.Query(ctx, stmt, millis(run.WindowFrom), millis(run.WindowTo), afterAt, afterID, reconcilePage)
		if err != nil {
			return wrap("list succeeded", err)
		}
		var page []*T
		for rs.Next() {
			t, err := scan(rs)
			if err != nil {
				rs.Close()
				return wrap("list succeeded", err)
			}
			page = append(page, t)
		}
		err = rs.Err()
		rs.Close()
		if err != nil {
			return wrap("list succeeded", err)
		}
		for _, t := range page {
			if err := f(t); err != nil {
				return err
			}
		}
		if len(page) < reconcilePage {
			return nil
		}
		at, id := cursor(page[len(page)-1])
		afterAt, afterID = millis(at), id
	}
}

// LastRun returns the latest reconciliation run, or nil if none has run.
func (s *Store) LastRun(ctx context.Context) (*ReconciliationRun, error) {
	var (
		r                             ReconciliationRun
		started, finished, wfrom, wto int64
	)
	err := s.db.QueryRow(ctx, s.sql.lastRun).Scan(&r.ID, &started, &finished, &wfrom, &wto,
		&r.ProviderCharges, &r.ProviderRefunds, &r.Matched, &r.Fixed, &r.Mismatches)
	if errors.Is(err, database.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, wrap("read the last reconciliation run", err)
	}
	r.StartedAt, r.FinishedAt, r.WindowFrom, r.WindowTo = fromMillis(started), fromMillis(finished), fromMillis(wfrom), fromMillis(wto)
	return &r, nil
}
