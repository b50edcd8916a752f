package payments

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/idemhq/idem/payd/internal/provider"
)

// Metrics are the processor's Prometheus metrics. A nil *Metrics records
// nothing.
type Metrics struct {
	providerCalls *prometheus.CounterVec
	retries       prometheus.Counter
	sweeps        prometheus.Counter
	leaseLosses   prometheus.Counter
	settled       *prometheus.CounterVec
	holds         *prometheus.CounterVec
	unresolvedOut *prometheus.CounterVec
}

// NewMetrics registers the processor's metrics, and gauges of the backlog
// and of open reconciliation mismatches read from store on each scrape, on
// reg.
func NewMetrics(reg prometheus.Registerer, store *Store) *Metrics {
	m := &Metrics{
		providerCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "payd_provider_calls_total",
			Help: "Provider calls, by what they were for (payment or refund) and result: succeeded, failed, declined, retryable or unknown.",
		}, []string{"kind", "result"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "payd_retries_total",
			Help: "Payments scheduled for another attempt after a retryable provider error.",
		}),
		sweeps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "payd_sweeps_total",
			Help: "Payments re-driven after their worker's lease expired.",
		}),
		leaseLosses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "payd_lease_losses_total",
			Help: "Outcomes refused because a newer claim held the payment.",
		}),
		settled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "payd_settled_total",
			Help: "Payments and refunds that reached a final state, by kind (payment or refund) and state.",
		}, []string{"kind", "state"}),
		holds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "payd_held_total",
			Help: "Payments and refunds a worker held because the provider's record under their key was not what payd asked for (another amount, say); each needs an operator.",
		}, []string{"kind"}),
		unresolvedOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "payd_unresolved_outcomes_total",
			Help: "Looks at payments and refunds whose outcome was still unknown near the end of the provider's key window; any is worth an alert.",
		}, []string{"kind"}),
	}
	backlog := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "payd_queue_depth",
		Help: "Payments and refunds not yet final: pending, processing, retrying or unknown.",
	}, func() float64 {
		n, err := store.Backlog(context.Background())
		if err != nil {
			return -1
		}
		return float64(n)
	})
	mismatches := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "payd_reconciliation_open_mismatches",
		Help: "Disagreements with the provider that reconciliation found and could not fix: see GET /v1/reconciliation.",
	}, func() float64 {
		open, err := store.OpenMismatches(context.Background())
		if err != nil {
			return -1
		}
		return float64(len(open))
	})
	reg.MustRegister(m.providerCalls, m.retries, m.sweeps, m.leaseLosses, m.settled, m.holds, m.unresolvedOut, backlog, mismatches)
	return m
}

func (m *Metrics) providerCall(task string, kind provider.Kind, state string) {
	if m == nil {
		return
	}
	result := kind.String()
	if kind == 0 {
		result = state
	}
	m.providerCalls.WithLabelValues(task, result).Inc()
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

func (m *Metrics) leaseLost() {
	if m != nil {
		m.leaseLosses.Inc()
	}
}

func (m *Metrics) settledAs(task, state string) {
	if m != nil {
		m.settled.WithLabelValues(task, state).Inc()
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
