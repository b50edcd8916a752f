package payments

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/idemhq/idem/internal/provider"
)

// Kinds of reconciliation mismatch.
const (
	// MismatchLostCharge: the provider has a succeeded charge and payd no
	// succeeded payment for it. Money was taken that payd does not show.
	MismatchLostCharge = "provider_charge_without_payment"
	// MismatchMissingCharge: a payment succeeded and the provider has no
	// succeeded charge for it.
	MismatchMissingCharge = "payment_without_provider_charge"
	// MismatchAmount: the payment and the provider's charge differ in
	// amount or currency.
	MismatchAmount = "amount_mismatch"
	// MismatchLostRefund: the provider made a refund payd has no record of.
	MismatchLostRefund = "provider_refund_without_refund"
)

// Mismatch is a disagreement between payd and the provider that payd
// could not fix safely on its own. It stays open until a reconciliation
// run no longer finds it.
type Mismatch struct {
	Kind             string     `json:"kind"`
	PaymentID        string     `json:"payment_id,omitempty"`
	ProviderChargeID string     `json:"provider_charge_id,omitempty"`
	Detail           string     `json:"detail"`
	SubjectAt        time.Time  `json:"subject_at"` // when the charge or payment at fault was created
	FoundAt          time.Time  `json:"found_at"`
	ResolvedAt       *time.Time `json:"resolved_at,omitempty"`
}

func (m Mismatch) key() string { return m.Kind + "\x00" + m.PaymentID + "\x00" + m.ProviderChargeID }

// recordMismatch records m as open, or re-opens it.
func (s *Store) recordMismatch(ctx context.Context, m Mismatch) error {
	s.log.Warn("payd: reconciliation mismatch", slog.String("kind", m.Kind), slog.String("payment", m.PaymentID),
		slog.String("provider_charge", m.ProviderChargeID), slog.String("detail", m.Detail))
	err := s.execWrite(ctx, s.sql.recordMismatch, newID("mm_"), m.Kind, m.PaymentID, m.ProviderChargeID, m.Detail, millis(m.SubjectAt))
	return wrap("record mismatch", err)
}

// ReconciliationRun is one comparison of the provider's charges with
// payd's payments over a window of creation times.
type ReconciliationRun struct {
	ID              string    `json:"id"`
	StartedAt       time.Time `json:"started_at"`
	FinishedAt      time.Time `json:"finished_at"`
	WindowFrom      time.Time `json:"window_from"`
	WindowTo        time.Time `json:"window_to"`
	ProviderCharges int       `json:"provider_charges"`
	Matched         int       `json:"matched"`
	// Fixed counts payments settled to the provider's outcome; each fix is
	// in the audit log.
	Fixed      int `json:"fixed"`
	Mismatches int `json:"mismatches"`
}

// Defaults for ReconcilerConfig.
const (
	DefaultReconcileInterval = time.Minute
	DefaultReconcileWindow   = 24 * time.Hour
	DefaultReconcileGrace    = time.Minute
)

// ReconcilerConfig tunes a Reconciler. Zero fields mean the defaults.
type ReconcilerConfig struct {
	// Interval is the time between runs, with jitter. Default 1m.
	Interval time.Duration
	// Window is how far back each run looks. Default 24h.
	Window time.Duration
	// Grace leaves out what was created in the last Grace, which workers
	// are likely still settling. Default 1m.
	Grace  time.Duration
	Logger *slog.Logger
}

// Reconciler compares the provider's charges with payd's payments over a
// window, periodically. Payments not final yet whose charge the provider
// has decided are settled to match it (a safe fix, audited); every other
// disagreement is recorded as a Mismatch. Runs from several replicas at
// once are safe: every write is idempotent.
type Reconciler struct {
	store    *Store
	provider provider.Provider
	cfg      ReconcilerConfig

	stop context.CancelFunc
	done sync.WaitGroup
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
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return &Reconciler{store: store, provider: prov, cfg: c}
}

// Start runs reconciliation every Interval until Stop.
func (r *Reconciler) Start(ctx context.Context) {
	ctx, r.stop = context.WithCancel(context.WithoutCancel(ctx))
	r.done.Go(func() {
		for {
			t := time.NewTimer(r.cfg.Interval/2 + rand.N(r.cfg.Interval))
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			run, err := r.RunOnce(ctx)
			switch {
			case err != nil && ctx.Err() == nil:
				r.cfg.Logger.Warn("payd: reconciliation failed; the next run tries again", slog.Any("error", err))
			case err == nil:
				r.cfg.Logger.Info("payd: reconciliation run", slog.Int("provider_charges", run.ProviderCharges),
					slog.Int("matched", run.Matched), slog.Int("fixed", run.Fixed), slog.Int("mismatches", run.Mismatches))
			}
		}
	})
}

// Stop ends the periodic runs, waiting for one in progress.
func (r *Reconciler) Stop() {
	if r.stop != nil {
		r.stop()
		r.done.Wait()
	}
}

// RunOnce compares the provider's charges and payd's payments created in
// the window ending Grace ago, and records the run.
func (r *Reconciler) RunOnce(ctx context.Context) (*ReconciliationRun, error) {
	s := r.store
	now, err := s.Now(ctx)
	if err != nil {
		return nil, err
	}
	run := &ReconciliationRun{ID: newID("rec_"), StartedAt: now, WindowTo: now.Add(-r.cfg.Grace)}
	run.WindowFrom = run.WindowTo.Add(-r.cfg.Window)

	charges, err := provider.Collect(r.provider.Charges(ctx, run.WindowFrom, run.WindowTo))
	if err != nil {
		return nil, fmt.Errorf("payments: reconcile: list the provider's charges: %w", err)
	}
	// A payment is charged after it is created, usually within seconds:
	// payments from a little before the window are read in the same query,
	// and any other is looked up by key.
	ours, err := s.createdIn(ctx, run.WindowFrom.Add(-time.Hour), run.WindowTo)
	if err != nil {
		return nil, err
	}
	run.ProviderCharges = len(charges)
	found := map[string]bool{}   // mismatches found, by key
	charged := map[string]bool{} // provider keys with a succeeded charge
	for _, ch := range charges {
		if ch.Status == provider.StatusSucceeded {
			charged[ch.IdempotencyKey] = true
		}
		p, ok := ours[ch.IdempotencyKey]
		if !ok {
			if p, err = s.byProviderKey(ctx, ch.IdempotencyKey); errors.Is(err, ErrNotFound) {
				p, err = nil, nil
			}
			if err != nil {
				return nil, err
			}
		}
		c, m, err := s.checkCharge(ctx, r.provider, ch, p, "reconciliation", "reconciliation "+run.ID)
		if err != nil {
			return nil, fmt.Errorf("payments: reconcile charge %s: %w", ch.ID, err)
		}
		switch c {
		case chargeMatched:
			run.Matched++
		case chargeSettled:
			run.Fixed++
		case chargeMismatch:
			found[m.key()] = true
		}
	}

	// Payments created in the window that succeeded with no succeeded
	// charge in the listing: the charge may have been made after the
	// window ended, so each is looked up before it is called a mismatch.
	for _, p := range ours {
		if p.State != StateSucceeded || charged[p.ProviderKey] || p.CreatedAt.Before(run.WindowFrom) {
			continue
		}
		ch, err := r.provider.ChargeByKey(ctx, p.ProviderKey)
		if err != nil && !errors.Is(err, provider.ErrNotFound) {
			return nil, fmt.Errorf("payments: reconcile payment %s: %w", p.ID, err)
		}
		if err == nil && ch.Status == provider.StatusSucceeded {
			continue
		}
		m := Mismatch{Kind: MismatchMissingCharge, PaymentID: p.ID, ProviderChargeID: ch.ID, SubjectAt: p.CreatedAt,
			Detail: fmt.Sprintf("payment %s of %d %s succeeded; the provider has no succeeded charge under key %s", p.ID, p.Amount, p.Currency, p.ProviderKey)}
		if err := s.recordMismatch(ctx, m); err != nil {
			return nil, err
		}
		found[m.key()] = true
	}
	run.Mismatches = len(found)

	// What was open in the window and was not found again is resolved.
	open, err := s.OpenMismatches(ctx)
	if err != nil {
		return nil, err
	}
	for _, m := range open {
		if found[m.key()] || m.SubjectAt.Before(run.WindowFrom) || !m.SubjectAt.Before(run.WindowTo) {
			continue
		}
		if err := s.execWrite(ctx, s.sql.resolveMismatch, m.Kind, m.PaymentID, m.ProviderChargeID); err != nil {
			return nil, wrap("resolve mismatch", err)
		}
	}
	if run.FinishedAt, err = s.Now(ctx); err != nil {
		return nil, err
	}
	err = s.execWrite(ctx, s.sql.insertRun, run.ID, millis(run.StartedAt), millis(run.FinishedAt), millis(run.WindowFrom),
		millis(run.WindowTo), run.ProviderCharges, run.Matched, run.Fixed, run.Mismatches)
	return run, wrap("record reconciliation run", err)
}

// createdIn returns the payments created in [from, to), by provider key.
func (s *Store) createdIn(ctx context.Context, from, to time.Time) (map[string]*Payment, error) {
	rs, err := s.pool.query(ctx, s.sql.createdIn, millis(from), millis(to))
	if err != nil {
		return nil, wrap("list payments", err)
	}
	defer rs.Close()
	out := map[string]*Payment{}
	for rs.Next() {
		p, err := scanPayment(rs)
		if err != nil {
			return nil, wrap("list payments", err)
		}
		out[p.ProviderKey] = p
	}
	return out, wrap("list payments", rs.Err())
}

// OpenMismatches returns the mismatches not resolved, oldest first.
func (s *Store) OpenMismatches(ctx context.Context) ([]Mismatch, error) {
	rs, err := s.pool.query(ctx, s.sql.openMismatches)
	if err != nil {
		return nil, wrap("list mismatches", err)
	}
	defer rs.Close()
	out := []Mismatch{}
	for rs.Next() {
		var (
			m              Mismatch
			subject, found int64
		)
		if err := rs.Scan(&m.Kind, &m.PaymentID, &m.ProviderChargeID, &m.Detail, &subject, &found); err != nil {
			return nil, wrap("list mismatches", err)
		}
		m.SubjectAt, m.FoundAt = fromMillis(subject), fromMillis(found)
		out = append(out, m)
	}
	return out, wrap("list mismatches", rs.Err())
}

// LastRun returns the latest reconciliation run, or nil if none has run.
func (s *Store) LastRun(ctx context.Context) (*ReconciliationRun, error) {
	var (
		r                             ReconciliationRun
		started, finished, wfrom, wto int64
	)
	err := s.pool.queryRow(ctx, s.sql.lastRun).Scan(&r.ID, &started, &finished, &wfrom, &wto,
		&r.ProviderCharges, &r.Matched, &r.Fixed, &r.Mismatches)
	if errors.Is(err, errNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, wrap("read the last reconciliation run", err)
	}
	r.StartedAt, r.FinishedAt, r.WindowFrom, r.WindowTo = fromMillis(started), fromMillis(finished), fromMillis(wfrom), fromMillis(wto)
	return &r, nil
}
