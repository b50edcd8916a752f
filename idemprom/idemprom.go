package idemprom

import (
	"context"
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/idemhq/idem/observe"
)

// durationBuckets are the idem_duration_seconds bucket bounds: from a fast
// fn to a wait or a lost lease of a minute.
var durationBuckets = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// New registers idem's collectors on reg and returns an observer for
// idem.Config.Observer that updates them, safe for concurrent use
// (TestConcurrentCalls). It returns the Registerer's error
// if any collector is refused, with none left registered.
func New(reg prometheus.Registerer) (func(context.Context, observe.Event), error) {
	if reg == nil {
		return nil, errors.New("idemprom: nil Registerer")
	}
	o := &observer{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idem_events_total",
			Help: "Events of idem calls, by outcome.",
		}, []string{"outcome"}),
		durations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "idem_duration_seconds",
			Help:    "How long fn ran or the call waited, by outcome.",
			Buckets: durationBuckets,
		}, []string{"outcome"}),
		notRecorded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "idem_not_recorded_total",
			Help: "Outcomes lost after fn ran: the effect happened and the record is missing.",
		}),
	}
	if err := register(reg, o.events, o.durations, o.notRecorded); err != nil {
		return nil, err
	}
	// Kinds are numbered from 1 with no gaps, and String says "unknown"
	// past the last, so a kind added later is counted from the start too.
	o.counts = make([]prometheus.Counter, 1) // kind 0 is no kind
	for k := observe.Executed; k.String() != "unknown"; k++ {
		o.counts = append(o.counts, o.events.WithLabelValues(k.String()))
	}
	return o.observe, nil
}

// register registers cs on reg, all or none.
func register(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return err
		}
	}
	return nil
}

type observer struct {
	events      *prometheus.CounterVec
	durations   *prometheus.HistogramVec
	notRecorded prometheus.Counter
	// counts holds the counter of each kind that observe names, indexed by
	// kind, so that the replay path looks up no label.
	counts []prometheus.Counter
}

func (o *observer) observe(_ context.Context, ev observe.Event) {
	if int(ev.Kind) < len(o.counts) && o.counts[ev.Kind] != nil {
		o.counts[ev.Kind].Inc()
	} else {
		o.events.WithLabelValues(ev.Kind.String()).Inc()
	}
	if ev.Duration > 0 {
		o.durations.WithLabelValues(ev.Kind.String()).Observe(ev.Duration.Seconds())
	}
	if ev.Kind == observe.NotRecorded {
		o.notRecorded.Inc()
	}
}
