package main

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/idemhq/idem/idemprom"
	"github.com/idemhq/idem/observe"
)

// newRegistry is payd's metrics registry, with the Go runtime's and the
// process's collectors; each part of payd registers its own metrics on it.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// engineObserver is what the engine tells of each idempotent call, on
// reg: idem_events_total by outcome, idem_duration_seconds, and
// idem_not_recorded_total for an effect whose record was lost
// (TestAdminServesMetrics). Other observers join here, through
// observe.All.
func engineObserver(reg prometheus.Registerer) (func(context.Context, observe.Event), error) {
	metrics, err := idemprom.New(reg)
	if err != nil {
		return nil, err
	}
	return observe.All(metrics), nil
}
