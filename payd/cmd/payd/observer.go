package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	metricnoop "go.opentelemetry.io/otel/metric/noop"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/idemotel"
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

// newEngine is payd's idempotency engine on st, its events reported to
// engineObserver's observers.
func newEngine(st *storage, log *slog.Logger, reg prometheus.Registerer, tr *tracing) (*idem.Engine, error) {
	observer, err := engineObserver(reg, tr, st.payments.Dialect())
	if err != nil {
		return nil, err
	}
	return idem.New(st.idem, &idem.Config{Namespace: "payd", Logger: log, Observer: observer})
}

// engineObserver is what the engine tells of each idempotent call: on
// reg, idem_events_total by outcome, idem_duration_seconds, and
// idem_not_recorded_total for an effect whose record was lost
// (TestAdminServesMetrics); with tracing on, a span in the request's
// trace for each event (idemotel), on the store named store ("sqlite" or
// "postgres").
func engineObserver(reg prometheus.Registerer, t *tracing, store string) (func(context.Context, observe.Event), error) {
	metrics, err := idemprom.New(reg)
	if err != nil {
		return nil, err
	}
	observers := []func(context.Context, observe.Event){metrics}
	if t.provider != nil {
		spans, err := idemotel.New(&idemotel.Config{TracerProvider: t.provider, MeterProvider: metricnoop.NewMeterProvider(), Store: store})
		if err != nil {
			return nil, fmt.Errorf("tracing the idempotency engine: %w", err)
		}
		observers = append(observers, spans)
	}
	return observe.All(observers...), nil
}
