package idemotel

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/idemhq/idem/observe"
)

// scope names this package to the providers, as OpenTelemetry asks of
// instrumentation libraries.
const scope = "github.com/idemhq/idem/idemotel"

// Attribute keys.
const (
	outcomeKey  = attribute.Key("idem.outcome")
	fenceKey    = attribute.Key("idem.fence")
	storeKey    = attribute.Key("idem.store")
	storeKeyKey = attribute.Key("idem.store_key")
)

// durationBuckets are the idem.duration bucket bounds in seconds: from a
// fast fn to a wait or a lost lease of a minute.
var durationBuckets = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// Config sets up the adapter. A nil *Config, and every zero field, means
// the documented default.
type Config struct {
	// TracerProvider makes the spans. Default otel.GetTracerProvider()
	// (TestNilConfigUsesGlobalProviders).
	TracerProvider trace.TracerProvider

	// MeterProvider makes the metrics. Default otel.GetMeterProvider()
	// (TestNilConfigUsesGlobalProviders).
	MeterProvider metric.MeterProvider

	// Store names the engine's store, such as "postgres", recorded as
	// idem.store on every span and measurement. Default: no idem.store.
	Store string
}

// New returns an observer for idem.Config.Observer that reports every event
// as a span and in metrics, safe for concurrent use (TestConcurrentCalls).
// It fails only if the meter cannot make an instrument.
func New(cfg *Config) (func(context.Context, observe.Event), error) {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if c.TracerProvider == nil {
		c.TracerProvider = otel.GetTracerProvider()
	}
	if c.MeterProvider == nil {
		c.MeterProvider = otel.GetMeterProvider()
	}
	o := &observer{tracer: c.TracerProvider.Tracer(scope), store: c.Store}
	if err := o.instruments(c.MeterProvider.Meter(scope)); err != nil {
		return nil, err
	}
	o.prepare()
	return o.observe, nil
}

type observer struct {
	tracer      trace.Tracer
	store       string
	events      metric.Int64Counter
	durations   metric.Float64Histogram
	notRecorded metric.Int64Counter

	// Made once, so that an event builds no attribute set for its
	// metrics. Indexed by kind; index 0 stands for every unknown kind.
	names      []string
	measures   []metric.MeasurementOption
	storeAttrs metric.MeasurementOption
}

func (o *observer) instruments(m metric.Meter) error {
	var err1, err2, err3 error
	o.events, err1 = m.Int64Counter("idem.events",
		metric.WithUnit("{event}"),
		metric.WithDescription("Events of idem calls, by outcome."))
	o.durations, err2 = m.Float64Histogram("idem.duration",
		metric.WithUnit("s"),
		metric.WithDescription("How long fn ran or the call waited, by outcome."),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	o.notRecorded, err3 = m.Int64Counter("idem.not_recorded",
		metric.WithUnit("{event}"),
		metric.WithDescription("Outcomes lost after fn ran: the effect happened and the record is missing."))
	return errors.Join(err1, err2, err3)
}

// prepare makes the span names and measurement attributes of every kind
// that observe.Kind names. Kinds are numbered from 1 with no gaps, and
// String says "unknown" past the last, so a kind added later is covered.
func (o *observer) prepare() {
	var store []attribute.KeyValue
	if o.store != "" {
		store = []attribute.KeyValue{storeKey.String(o.store)}
	}
	o.storeAttrs = metric.WithAttributeSet(attribute.NewSet(store...))
	add := func(k observe.Kind) {
		o.names = append(o.names, "idem."+k.String())
		attrs := append([]attribute.KeyValue{outcomeKey.String(k.String())}, store...)
		o.measures = append(o.measures, metric.WithAttributeSet(attribute.NewSet(attrs...)))
	}
	add(0) // "unknown"
	for k := observe.Executed; k.String() != "unknown"; k++ {
		add(k)
	}
}

// index returns k's index in names and measures.
func (o *observer) index(k observe.Kind) int {
	if int(k) < len(o.names) {
		return int(k)
	}
	return 0
}

func (o *observer) observe(ctx context.Context, ev observe.Event) {
	now := time.Now()
	i := o.index(ev.Kind)
	o.span(ctx, ev, o.names[i], now)
	o.events.Add(ctx, 1, o.measures[i])
	if ev.Duration > 0 {
		o.durations.Record(ctx, ev.Duration.Seconds(), o.measures[i])
	}
	if ev.Kind == observe.NotRecorded {
		o.notRecorded.Add(ctx, 1, o.storeAttrs)
	}
}

// span records ev, which happened at now, as a child of the span in ctx.
func (o *observer) span(ctx context.Context, ev observe.Event, name string, now time.Time) {
	attrs := make([]attribute.KeyValue, 0, 4)
	attrs = append(attrs, outcomeKey.String(ev.Kind.String()), storeKeyKey.String(ev.Key))
	if ev.Fence != 0 {
		attrs = append(attrs, fenceKey.Int64(ev.Fence))
	}
	if o.store != "" {
		attrs = append(attrs, storeKey.String(o.store))
	}
	_, span := o.tracer.Start(ctx, name,
		trace.WithTimestamp(now.Add(-ev.Duration)),
		trace.WithAttributes(attrs...))
	switch ev.Kind {
	case observe.NotRecorded, observe.StoreError:
		msg := ev.Kind.String()
		if ev.Err != nil {
			msg = ev.Err.Error()
		}
		span.SetStatus(codes.Error, msg)
	case observe.LeaseLost:
		span.SetStatus(codes.Error, "lease lost while fn ran; its outcome was discarded")
	}
	span.End(trace.WithTimestamp(now))
}
