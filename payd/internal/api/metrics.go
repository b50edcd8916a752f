package api

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	accepts prometheus.Counter
	replays prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) metrics {
	m := metrics{
		accepts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "payd_accepts_total",
			Help: "Charges accepted: payments created.",
		}),
		replays: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "payd_replays_total",
			Help: "Charge requests answered with a recorded response (Idempotent-Replayed).",
		}),
	}
	reg.MustRegister(m.accepts, m.replays)
	return m
}
