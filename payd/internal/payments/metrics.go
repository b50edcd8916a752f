package payments

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/idemhq/idem/payd/internal/provider"
)

// Metrics are payd's Prometheus metrics of payments and refunds: the
// processor's, and the settlements the Store records, whoever makes them.
// A nil *Metrics records nothing.
type Metrics struct {
	providerCalls    *prometheus.CounterVec
	providerLatency  *prometheus.HistogramVec
	retries          prometheus.Counter
	sweeps           prometheus.Counter
	leaseLosses      *prometheus.CounterVec
	settled          *prometheus.CounterVec
	acceptToFinal    *prometheus.HistogramVec
	holds            *prometheus.CounterVec
	unresolvedOut    *prometheus.CounterVec
	backlog, openMis prometheus.GaugeFunc
}

// Who settled a payment or refund: the by label of payd_settled_total.
const (
	byWorker         = "worker"
	byWebhook        = "webhook"
	byReconciliation = "reconciliation"
	byOther          = "other"
)

// Why a worker's outcome was refused (ErrFenced): the cause label of
// payd_lease_losses_total.
const (
	// lostToNewerClaim: another worker claimed the work after this one's
	// lease expired. A real lease loss: the worker outlived its lease.
	lostToNewerClaim = "newer_claim"
	// lostToSettlement: no claim since, but a webhook, reconciliation or a
	// correction settled it first. A harmless race: the provider's webhook
	// often lands before its response does.
	lostToSettlement = "settled_first"
	// lostToHold: no claim since, but a webhook or reconciliation held it,
	// having found the provider's record not the one payd asked for.
	lostToHold = "held"
	// lostUnknown: the row could not be read to tell.
	lostUnknown = "unknown"
)

// Histogram buckets, in seconds: a provider call takes milliseconds to the
// provider timeout; a payment becomes final within a second, or after
// retries and lookups that can take hours.
var (
	providerCallBuckets  = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}
	acceptToFinalBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 24 * 3600}
)

// NewMetrics registers payd's payment metrics on reg, with gauges of the
// backlog and of open reconciliation mismatches read from store on each
// scrape, and has store count on them every settlement it records: a
// worker's, a webhook's or reconciliation's (TestSettledCountsEveryPath).
// Call it before store is used by more than one goroutine.
func NewMetrics(reg prometheus.Registerer, store *Store) *Metrics {
	m := newMetricsOf(store)
	reg.MustRegister(m.providerCalls, m.providerLatency, m.retries, m.sweeps, m.leaseLosses, m.settled, m.acceptToFinal,
		m.holds, m.unresolvedOut, m.backlog, m.openMis)
	for _, cause := range []string{lostToNewerClaim, lostToSettlement, lostToHold, lostUnknown} {
		m.leaseLosses.WithLabelValues(cause)
	}
	for _, kind := range []string{"payment", "refund"} {
		m.holds.WithLabelValues(kind)
		m.unresolvedOut.WithLabelValues(kind)
		for _, state := range []string{StateSucceeded, StateFailed} {
			for _, by := range []string{byWorker, byWebhook, byReconciliation} {
				m.settled.WithLabelValues(kind, state, by)
			}
		}
	}
	store.metrics = m
	return m
}

func newMetricsOf(store *Store) *Metrics {
	return &Metrics{
		providerCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "payd_provider_calls_total",
			Help: "Provider calls, by what they were for (payment or refund) and result: succeeded, failed, declined, retryable or unknown.",
		}, []string{"kind", "result"}),
		providerLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "payd_provider_call_duration_seconds",
			Help:    "How long a worker's charge or refund request to the provider took, by kind (payment or refund) and result, as payd_provider_calls_total counts them.",
			Buckets: providerCallBuckets,
		}, []string{"kind", "result"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "payd_retries_total",
			Help: "Payments scheduled for another attempt after a retryable provider error.",
		}),
		sweeps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "payd_sweeps_total",
			Help: "Payments re-driven after their worker's lease expired.",
		}),
		leaseLosses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "payd_lease_losses_total",
			Help: "Worker outcomes refused because the fence moved, by cause: newer_claim (another worker took over an expired lease: worth a look), " +
				"settled_first (a webhook, reconciliation or correction settled it first: harmless), held (a webhook or reconciliation held it), unknown.",
		}, []string{"cause"}),
		settled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "payd_settled_total",
			Help: "Payments and refunds that reached a final state, by kind (payment or refund), state, and who settled them: worker, webhook or reconciliation.",
		}, []string{"kind", "state", "by"}),
		acceptToFinal: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "payd_payment_accept_to_final_seconds",
			Help:    "From a payment's acceptance to its final state, by that state, by the database's clock.",
			Buckets: acceptToFinalBuckets,
		}, []string{"state"}),
		holds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "payd_held_total",
			Help: "Payments and refunds a worker held because the provider's record under their key was not what payd asked for (another amount, say); each needs an operator.",
		}, []string{"kind"}),
		unresolvedOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "payd_unresolved_outcomes_total",
			Help: "Looks at payments and refunds whose outcome was still unknown near the end of the provider's key window; any is worth an alert.",
		}, []string{"kind"}),
		backlog: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "payd_queue_depth",
			Help: "Payments and refunds not yet final: pending, processing, retrying or unknown.",
		}, func() float64 {
			n, err := store.Backlog(context.Background())
			if err != nil {
				return -1
			}
			return float64(n)
		}),
		openMis: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "payd_reconciliation_open_mismatches",
			Help: "Disagreements with the provider that reconciliation found and could not fix: see GET /v1/reconciliation.",
		}, func() float64 {
			open, err := store.OpenMismatches(context.Background())
			if err != nil {
				return -1
			}
			return float64(len(open))
		}),
	}
}

// providerCall counts a worker's provider request for task, and how long
// it took, by its result: the error's kind, or else the state judged.
func (m *Metrics) providerCall(task string, kind provider.Kind, state string, took time.Duration) {
	if m == nil {
		return
	}
	result := kind.String()
	if kind == 0 {
		result = state
	}
	m.providerCalls.WithLabelValues(task, result).Inc()
	m.providerLatency.WithLabelValues(task, result).Observe(took.Seconds())
}

func (m *Metrics) retry() {
	if m != nil {
		m.retries.Inc()
	}
}

func (m *Metrics) sweep() {
	if m != nil {
		m.sweeps.Inc()
	}
}

func (m *Metrics) leaseLost(cause string) {
	if m != nil {
		m.leaseLosses.WithLabelValues(cause).Inc()
	}
}

// settledAs counts a payment or refund (task) settled to state by actor,
// and for a payment, how long after its acceptance (age).
func (m *Metrics) settledAs(task, state, actor string, age time.Duration) {
	if m == nil {
		return
	}
	by := actor
	switch actor {
	case byWorker, byWebhook, byReconciliation:
	default:
		by = byOther
	}
	m.settled.WithLabelValues(task, state, by).Inc()
	if task == "payment" {
		m.acceptToFinal.WithLabelValues(state).Observe(max(age, 0).Seconds())
	}
}

func (m *Metrics) held(task string) {
	if m != nil {
		m.holds.WithLabelValues(task).Inc()
	}
}

func (m *Metrics) unresolved(task string) {
	if m != nil {
		m.unresolvedOut.WithLabelValues(task).Inc()
	}
}
