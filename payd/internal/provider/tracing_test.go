package provider_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/idemhq/idem/payd/internal/provider"
	"github.com/idemhq/idem/payd/internal/simulator"
)

// traceparentSim is a simulator that records the traceparent header of
// every request it receives.
type traceparentSim struct {
	url string
	mu  sync.Mutex
	got []string
}

func newTraceparentSim(t *testing.T) *traceparentSim {
	t.Helper()
	sim := simulator.New(&simulator.Config{})
	s := &traceparentSim{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.got = append(s.got, r.Header.Get("traceparent"))
		s.mu.Unlock()
		sim.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(func() { srv.Close(); sim.Close() })
	s.url = srv.URL
	return s
}

func (s *traceparentSim) received() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.got...)
}

var traceparentFormat = regexp.MustCompile(`^00-([0-9a-f]{32})-([0-9a-f]{16})-01$`)

// TestProviderCallIsTraced: with a TracerProvider, each call is a client
// span in the caller's trace, named by method and path, and the provider
// receives its W3C traceparent; a lookup that finds nothing is a failed
// span, as the HTTP conventions have a 404. Without one, no traceparent
// is sent, even from a traced caller.
func TestProviderCallIsTraced(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	sim := newTraceparentSim(t)
	traced := newClient(t, sim.url, &provider.ClientConfig{TracerProvider: tp})

	ctx, caller := tp.Tracer("test").Start(t.Context(), "attempt")
	if _, err := traced.Charge(ctx, provider.ChargeRequest{IdempotencyKey: "k1", Amount: 1000, Currency: "usd"}); err != nil {
		t.Fatal(err)
	}
	if _, err := traced.RefundByKey(ctx, "no-such-key"); !errors.Is(err, provider.ErrNotFound) {
		t.Fatalf("RefundByKey = %v, want ErrNotFound", err)
	}
	caller.End()

	spans := rec.Ended()
	got := sim.received()
	if len(spans) != 3 || len(got) != 2 {
		t.Fatalf("%d spans and %d requests, want the caller's and 2 calls', and 2 requests", len(spans), len(got))
	}
	for i, want := range []struct {
		name   string
		status codes.Code
	}{{"POST /charges", codes.Unset}, {"GET /refunds", codes.Error}} {
		s := spans[i]
		if s.Name() != want.name || s.SpanKind() != trace.SpanKindClient || s.Status().Code != want.status {
			t.Errorf("span %d: %s, kind %s, status %s; want %s, client, %s", i, s.Name(), s.SpanKind(), s.Status().Code, want.name, want.status)
		}
		if s.Parent().SpanID() != caller.SpanContext().SpanID() {
			t.Errorf("span %s is not a child of the caller's span", s.Name())
		}
		m := traceparentFormat.FindStringSubmatch(got[i])
		if m == nil || m[1] != s.SpanContext().TraceID().String() || m[2] != s.SpanContext().SpanID().String() {
			t.Errorf("request %d carried traceparent %q, want the trace %s and the span %s of %s", i, got[i],
				s.SpanContext().TraceID(), s.SpanContext().SpanID(), s.Name())
		}
	}

	untraced := newClient(t, sim.url, nil)
	if _, err := untraced.Charge(ctx, provider.ChargeRequest{IdempotencyKey: "k2", Amount: 1000, Currency: "usd"}); err != nil {
		t.Fatal(err)
	}
	if got := sim.received(); len(got) != 3 || got[2] != "" {
		t.Fatalf("an untraced client sent traceparent %q, want none", got[len(got)-1])
	}
}
