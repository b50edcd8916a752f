package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// tracing is payd serve's OpenTelemetry tracing. It is on only when the
// environment configures an exporter (otelenv.go): then a charge's spans,
// from the API's request through the accept, each worker attempt and its
// provider call to the settlement, make one trace (TestChargeIsOneTrace),
// and the provider receives its W3C traceparent. Off, every part is left
// as it was: no exporter, no span, no wrapped handler.
type tracing struct {
	// provider makes payd's spans; nil when tracing is off.
	provider trace.TracerProvider
	// sdk is flushed and shut down at the end; nil when off.
	sdk *sdktrace.TracerProvider
}

// shutdownTimeout bounds the export of the last spans when payd stops.
const shutdownTimeout = 5 * time.Second

// newTracing sets tracing up as the OTEL_* variables say, console spans
// going to stdout, OpenTelemetry's own errors (an export that failed) to
// log. A variable payd cannot use is an error that names it.
func newTracing(ctx context.Context, getenv func(string) string, stdout io.Writer, log *slog.Logger) (*tracing, error) {
	exporters, err := traceExporters(ctx, getenv, stdout)
	if err != nil || len(exporters) == 0 {
		return &tracing{}, err
	}
	// service.name is payd's unless OTEL_SERVICE_NAME or
	// OTEL_RESOURCE_ATTRIBUTES says otherwise: later detectors win.
	res, err := resource.New(ctx, resource.WithAttributes(semconv.ServiceName("payd")), resource.WithFromEnv(),
		resource.WithTelemetrySDK(), resource.WithHost(), resource.WithProcessPID())
	if errors.Is(err, resource.ErrPartialResource) {
		log.Warn("payd: tracing: part of the resource could not be detected", slog.Any("error", err))
	} else if err != nil {
		return nil, fmt.Errorf("tracing: the resource: %w", err)
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	for _, e := range exporters {
		opts = append(opts, sdktrace.WithBatcher(e))
	}
	// The SDK reports what goes wrong after start, such as an export the
	// collector refused, to OpenTelemetry's process-wide handler.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("payd: tracing: spans may be lost", slog.Any("error", err))
	}))
	tp := sdktrace.NewTracerProvider(opts...)
	return &tracing{provider: tp, sdk: tp}, nil
}

// shutdown exports the spans still buffered, for up to shutdownTimeout.
func (t *tracing) shutdown(log *slog.Logger) {
	if t.sdk == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := t.sdk.Shutdown(ctx); err != nil {
		log.Warn("payd: tracing: the last spans were not all exported", slog.Any("error", err))
	}
}

// handler is the API's handler h in a server span per request, named by
// its route ("POST /v1/charges") and continuing the trace of an incoming
// traceparent (and W3C baggage). Health checks and metrics scrapes, which come every few
// seconds and say nothing of a charge, are left out. Its metrics are
// left to payd's own.
func (t *tracing) handler(h http.Handler) http.Handler {
	if t.provider == nil {
		return h
	}
	return otelhttp.NewHandler(h, "payd",
		otelhttp.WithTracerProvider(t.provider),
		otelhttp.WithPropagators(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})),
		otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()),
		otelhttp.WithFilter(func(r *http.Request) bool {
			switch r.URL.Path {
			case "/healthz", "/readyz", "/metrics":
				return false
			}
			return true
		}))
}
