package idemotel_test

import (
	"context"
	"fmt"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/idemotel"
	"github.com/idemhq/idem/memstore"
)

// The observer on an engine: each call's events become spans in the
// caller's trace. A service passes its own providers, or none for the
// global ones; the recorder here stands in for an exporter.
func ExampleNew() {
	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	mp := sdkmetric.NewMeterProvider()

	observer, err := idemotel.New(&idemotel.Config{TracerProvider: tp, MeterProvider: mp, Store: "memstore"})
	if err != nil {
		panic(err)
	}
	engine, err := idem.New(memstore.New(), &idem.Config{Observer: observer})
	if err != nil {
		panic(err)
	}

	ctx, span := tp.Tracer("checkout").Start(context.Background(), "POST /charges")
	charge := func(ctx context.Context) ([]byte, error) { return []byte("ch_1"), nil }
	for range 2 {
		if _, err := engine.Run(ctx, "order-1234", charge, nil); err != nil {
			panic(err)
		}
	}
	span.End()

	names := map[trace.SpanID]string{}
	for _, s := range recorder.Ended() {
		names[s.SpanContext().SpanID()] = s.Name()
	}
	for _, s := range recorder.Ended() {
		if s.Parent().IsValid() {
			fmt.Printf("%s in %s\n", s.Name(), names[s.Parent().SpanID()])
		}
	}
	// Output:
	// idem.executed in POST /charges
	// idem.replayed in POST /charges
}
