package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/idemhq/idem/payd/internal/api"
	"github.com/idemhq/idem/payd/internal/payments"
	"github.com/idemhq/idem/payd/internal/pgtest"
	"github.com/idemhq/idem/payd/internal/provider"
	"github.com/idemhq/idem/payd/internal/simulator"
)

// The trace a client's request carries in, which payd is to continue.
const (
	clientTraceID     = "4bf92f3577b34da6a3ce929d0e0e4736"
	clientSpanID      = "00f067aa0ba902b7"
	clientTraceparent = "00-" + clientTraceID + "-" + clientSpanID + "-01"
)

var traceparentFormat = regexp.MustCompile(`^00-([0-9a-f]{32})-([0-9a-f]{16})-01$`)

// chargeSim is a simulator behind a real server that records the
// traceparent header of each charge request it receives.
type chargeSim struct {
	url string
	mu  sync.Mutex
	got []string
}

func newChargeSim(t *testing.T) *chargeSim {
	t.Helper()
	sim := simulator.New(&simulator.Config{Seed: 1})
	s := &chargeSim{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/charges" {
			s.mu.Lock()
			s.got = append(s.got, r.Header.Get("traceparent"))
			s.mu.Unlock()
		}
		sim.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(func() { srv.Close(); sim.Close() })
	s.url = srv.URL
	return s
}

func (s *chargeSim) traceparents() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.got...)
}

// tracedPayd is payd's API, workers and provider client in this process,
// wired as payd serve wires them, tracing to an in-memory recorder.
type tracedPayd struct {
	url  string
	rec  *tracetest.SpanRecorder
	proc *payments.Processor
}

func startTracedPayd(t *testing.T, databaseURL, providerURL string) *tracedPayd {
	t.Helper()
	ctx, log := t.Context(), slog.New(slog.DiscardHandler)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	tr := &tracing{provider: tp, sdk: tp}

	st, err := openStorage(ctx, databaseURL, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.close)
	if err := st.migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := st.payments.EnsureAccount(ctx, devAccountID, "dev", testKey); err != nil {
		t.Fatal(err)
	}
	prov, err := provider.NewClient(providerURL, &provider.ClientConfig{TracerProvider: tr.provider})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prov.CloseIdleConnections)
	reg := prometheus.NewRegistry()
	engine, err := newEngine(st, log, reg, tr)
	if err != nil {
		t.Fatal(err)
	}
	cfg := serveConfig{workers: 2}
	pc := cfg.processorConfig(nil, log, nil, tr.provider)
	pc.PollInterval = 10 * time.Millisecond
	proc := payments.NewProcessor(st.payments, prov, pc)
	proc.Start(ctx)
	t.Cleanup(func() { proc.Stop(context.Background()) })
	h, err := api.NewServer(api.Config{Store: st.payments, Engine: engine, Tx: st.tx, Processor: proc, Registry: reg, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(tr.handler(h))
	t.Cleanup(srv.Close)
	return &tracedPayd{url: srv.URL, rec: rec, proc: proc}
}

// TestChargeIsOneTrace: a charge whose request carries a traceparent is
// one trace, continuing the client's: the API's server span, named by its
// route, the idempotency engine's span and the accept in it, the worker's
// attempt as the accept's child, and in the attempt the provider call,
// whose traceparent the provider receives, and the settlement.
func TestChargeIsOneTrace(t *testing.T) {
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			t.Parallel()
			url := filepath.Join(t.TempDir(), "payd.db")
			if db == "postgres" {
				url = pgtest.Database(t)
			}
			sim := newChargeSim(t)
			p := startTracedPayd(t, url, sim.url)
			id := tracedCharge(t, p.url)
			if err := p.proc.Stop(t.Context()); err != nil { // every attempt's span has ended
				t.Fatal(err)
			}
			spans := spansByName(p.rec.Ended())
			// The read back carries no traceparent: a trace of its own,
			// named by its route, not by a path with an id.
			if read := only(t, spans, "GET /v1/charges/{id}"); read.Parent().IsValid() || read.SpanContext().TraceID().String() == clientTraceID {
				t.Fatalf("the read back, sent without a traceparent, is not a trace of its own")
			}
			delete(spans, "GET /v1/charges/{id}")
			for name, ss := range spans {
				for _, s := range ss {
					if s.SpanContext().TraceID().String() != clientTraceID {
						t.Errorf("span %s is in trace %s, want the client's %s", name, s.SpanContext().TraceID(), clientTraceID)
					}
				}
			}
			server := only(t, spans, "POST /v1/charges")
			if server.SpanKind() != trace.SpanKindServer || server.Parent().SpanID().String() != clientSpanID || !server.Parent().IsRemote() {
				t.Fatalf("the server span is %s, child of %s, want a server span continuing the client's %s", server.SpanKind(), server.Parent().SpanID(), clientSpanID)
			}
			accept := childOf(t, spans, "payd.payment.accept", server)
			childOf(t, spans, "idem.executed", server)
			attempt := childOf(t, spans, "payd.payment.attempt", accept)
			call := childOf(t, spans, "POST /charges", attempt)
			childOf(t, spans, "payd.payment.settle", attempt)
			if !hasAttribute(accept, "payd.payment_id", id) || call.SpanKind() != trace.SpanKindClient {
				t.Fatalf("accept %v, provider call %s: want the charge's id and a client span", accept.Attributes(), call.SpanKind())
			}
			got := sim.traceparents()
			if len(got) != 1 {
				t.Fatalf("the provider received %d charge requests, want 1", len(got))
			}
			if m := traceparentFormat.FindStringSubmatch(got[0]); m == nil || m[1] != clientTraceID || m[2] != call.SpanContext().SpanID().String() {
				t.Fatalf("the provider received traceparent %q, want the trace %s and the provider call's span %s", got[0], clientTraceID, call.SpanContext().SpanID())
			}
		})
	}
}

// tracedCharge makes a charge, with the client's traceparent, waits for it
// to succeed, reads it back, and returns its id.
func tracedCharge(t *testing.T, url string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+"/v1/charges", strings.NewReader(orderBody))
	req.Header.Set("Authorization", "Bearer "+testKey)
	req.Header.Set("Idempotency-Key", "traced-1")
	req.Header.Set("Prefer", "wait=10")
	req.Header.Set("traceparent", clientTraceparent)
	req.Header.Set("Content-Type", "application/json")
	resp, err := apiClient(t, 0).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`"id":"(ch_[^"]+)".*"status":"succeeded"`).FindSubmatch(body)
	if resp.StatusCode != http.StatusOK || m == nil {
		t.Fatalf("charge: %d %s, want 200 and succeeded", resp.StatusCode, body)
	}
	if c := getCharge(t, url, string(m[1])); c.Status != payments.StateSucceeded {
		t.Fatalf("charge read back as %s", c.Status)
	}
	return string(m[1])
}

func spansByName(spans []sdktrace.ReadOnlySpan) map[string][]sdktrace.ReadOnlySpan {
	out := map[string][]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		out[s.Name()] = append(out[s.Name()], s)
	}
	return out
}

// only returns the one span named name.
func only(t *testing.T, spans map[string][]sdktrace.ReadOnlySpan, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	if len(spans[name]) != 1 {
		var names []string
		for n := range spans {
			names = append(names, n)
		}
		t.Fatalf("%d spans named %q, want 1; spans: %q", len(spans[name]), name, names)
	}
	return spans[name][0]
}

// childOf returns the one span named name, failing unless it is parent's
// child.
func childOf(t *testing.T, spans map[string][]sdktrace.ReadOnlySpan, name string, parent sdktrace.ReadOnlySpan) sdktrace.ReadOnlySpan {
	t.Helper()
	s := only(t, spans, name)
	if s.Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Fatalf("span %s is a child of %s, want of %s (%s)", name, s.Parent().SpanID(), parent.Name(), parent.SpanContext().SpanID())
	}
	return s
}

func hasAttribute(s sdktrace.ReadOnlySpan, key, value string) bool {
	for _, a := range s.Attributes() {
		if string(a.Key) == key && a.Value.String() == value {
			return true
		}
	}
	return false
}

// TestTracingIsOffWithoutExporter: unless an exporter is configured,
// tracing is off whatever else is set: no tracer provider, no exporter,
// the API's handler as it was, no engine observer. Either OTLP endpoint
// variable, or OTEL_TRACES_EXPORTER, turns it on.
func TestTracingIsOffWithoutExporter(t *testing.T) {
	for _, c := range []struct {
		name string
		env  map[string]string
		on   bool
	}{
		{"nothing set", nil, false},
		{"other variables only", map[string]string{"OTEL_SERVICE_NAME": "x", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_TRACES_SAMPLER": "always_on"}, false},
		{"exporter none", map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}, false},
		{"SDK disabled", map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"}, false},
		{"console", map[string]string{"OTEL_TRACES_EXPORTER": "console"}, true},
		{"endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}, true},
		{"traces endpoint", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:1/v1/traces"}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr, err := newTracing(t.Context(), func(k string) string { return c.env[k] }, io.Discard, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			defer tr.shutdown(slog.New(slog.DiscardHandler))
			mux := http.NewServeMux()
			on := tr.provider != nil
			if on != c.on || (tr.sdk != nil) != c.on || (tr.handler(mux) != http.Handler(mux)) != c.on {
				t.Fatalf("tracing on: provider %v, SDK %v, handler wrapped %v; want all %v",
					on, tr.sdk != nil, tr.handler(mux) != http.Handler(mux), c.on)
			}
		})
	}
}

// TestBadTracingVariableStopsPayd: a value payd cannot use stops payd serve
// before it opens anything, with an error naming the variable.
func TestBadTracingVariableStopsPayd(t *testing.T) {
	for _, c := range []struct{ name, value string }{
		{"OTEL_TRACES_EXPORTER", "jaeger"},
		{"OTEL_TRACES_EXPORTER", "none,console"},
		{"OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"},
		{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "localhost:4318"},
		{"OTEL_EXPORTER_OTLP_HEADERS", "api-key"},
		{"OTEL_EXPORTER_OTLP_TIMEOUT", "10s"},
		{"OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "/no/such/ca.pem"},
		{"OTEL_TRACES_SAMPLER", "sometimes"},
		{"OTEL_TRACES_SAMPLER_ARG", "1.5"},
		{"OTEL_RESOURCE_ATTRIBUTES", "deployment.environment"},
		{"OTEL_BSP_MAX_QUEUE_SIZE", "-1"},
		{"OTEL_SDK_DISABLED", "yes"},
	} {
		t.Run(c.name+"="+c.value, func(t *testing.T) {
			env := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", c.name: c.value}
			var stdout, stderr bytes.Buffer
			// The database is a directory: payd would fail opening it, had
			// it got that far.
			err := run(t.Context(), []string{"payd", "serve", "--database-url", t.TempDir()}, func(k string) string { return env[k] }, nil, &stdout, &stderr)
			if err == nil || !strings.Contains(err.Error(), "tracing: "+c.name+`="`+c.value+`"`) {
				t.Fatalf("payd serve = %v, want an error naming %s=%q", err, c.name, c.value)
			}
		})
	}
}
