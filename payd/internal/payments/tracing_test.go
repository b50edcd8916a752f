package payments

import (
	"context"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/idemhq/idem/payd/internal/database"
	"github.com/idemhq/idem/payd/internal/simulator"
)

// recorder is a tracer provider whose ended spans a test can read.
type recorder struct {
	*tracetest.SpanRecorder
	tp *sdktrace.TracerProvider
}

func newRecorder(t *testing.T) *recorder {
	r := &recorder{SpanRecorder: tracetest.NewSpanRecorder()}
	r.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(r.SpanRecorder))
	t.Cleanup(func() { r.tp.Shutdown(context.Background()) })
	return r
}

// traced is ctx in a new root span named name, as a request's would be.
func (r *recorder) traced(ctx context.Context, name string) (context.Context, trace.Span) {
	return r.tp.Tracer("test").Start(ctx, name)
}

// span returns the one ended span named name with attribute key=value.
func (r *recorder) span(t *testing.T, name string, key attribute.Key, value string) sdktrace.ReadOnlySpan {
	t.Helper()
	var found []sdktrace.ReadOnlySpan
	for _, s := range r.Ended() {
		for _, a := range s.Attributes() {
			if s.Name() == name && a.Key == key && a.Value.AsString() == value {
				found = append(found, s)
			}
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d ended spans %s with %s=%s, want 1; spans: %v", len(found), name, key, value, names(r.Ended()))
	}
	return found[0]
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name())
	}
	return out
}

// traceparent is the W3C traceparent of s, as payd stores it.
func traceparent(s sdktrace.ReadOnlySpan) string {
	sc := s.SpanContext()
	return "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-" + sc.TraceFlags().String()
}

// TestTraceContextTravelsWithTheRow: a payment accepted in a traced
// request keeps its accept span's traceparent, which its claim returns;
// one accepted untraced keeps none. A settlement by key, in a webhook's
// own trace, links to the accept span.
func TestTraceContextTravelsWithTheRow(t *testing.T) {
	eachDatabase(t, func(t *testing.T, s *Store) {
		rec := newRecorder(t)
		ctx, request := rec.traced(t.Context(), "request")
		p, err := s.Create(ctx, NewPayment{AccountID: "acct_test", Amount: 1999, Currency: "usd", Reference: "traced"})
		request.End()
		if err != nil {
			t.Fatal(err)
		}
		accept := rec.span(t, "payd.payment.accept", paymentIDKey, p.ID)
		if accept.Parent().SpanID() != request.SpanContext().SpanID() {
			t.Fatalf("accept's parent is %s, want the request's span %s", accept.Parent().SpanID(), request.SpanContext().SpanID())
		}
		c, err := s.ClaimDue(t.Context(), time.Minute)
		if err != nil || c == nil || c.ID != p.ID {
			t.Fatalf("claim = %+v %v, want %s", c, err, p.ID)
		}
		if want := traceparent(accept); c.TraceParent != want {
			t.Fatalf("the claim's traceparent is %q, want the accept span's %q", c.TraceParent, want)
		}

		untraced := newPayment(t, s, "untraced")
		if c, err := s.ClaimDue(t.Context(), time.Minute); err != nil || c == nil || c.ID != untraced.ID || c.TraceParent != "" {
			t.Fatalf("claim of a payment accepted untraced = %+v %v, want %s with no traceparent", c, err, untraced.ID)
		}

		ctx, webhook := rec.traced(t.Context(), "webhook")
		settled, err := s.SettleByKey(ctx, p.ProviderKey, Outcome{State: StateSucceeded, ProviderID: "ch_sim"}, "webhook", "test")
		webhook.End()
		if err != nil || !settled {
			t.Fatalf("SettleByKey = %v %v", settled, err)
		}
		settle := rec.span(t, "payd.payment.settle", settledByKey, "webhook")
		if settle.Parent().SpanID() != webhook.SpanContext().SpanID() {
			t.Fatalf("the webhook's settle span is not a child of the webhook's span")
		}
		if !slices.Contains(settle.Attributes(), changedKey.Bool(true)) {
			t.Fatalf("the webhook's settle span does not say it changed the payment: %v", settle.Attributes())
		}
		if links := settle.Links(); len(links) != 1 || links[0].SpanContext.SpanID() != accept.SpanContext().SpanID() ||
			links[0].SpanContext.TraceID() != accept.SpanContext().TraceID() {
			t.Fatalf("the webhook's settle span links to %+v, want the accept span %s", links, accept.SpanContext().SpanID())
		}
	})
}

// TestRefundAttemptContinuesItsAccept: a refund accepted in a traced
// request is worked on in a span that is a child of its accept span, and
// its settlement is a child of that attempt, as a charge's are.
func TestRefundAttemptContinuesItsAccept(t *testing.T) {
	eachDatabase(t, func(t *testing.T, s *Store) {
		rec := newRecorder(t)
		sim := newSim(t, simulator.Faults{})
		cfg := fastConfig()
		cfg.TracerProvider = rec.tp
		proc := startProcessor(t, s, sim.client(t, time.Second), cfg)
		p := newPayment(t, s, "refund-me")
		if got := awaitFinal(t, s, p.ID); got.State != StateSucceeded {
			t.Fatalf("payment %s, want succeeded", got.State)
		}
		ctx, request := rec.traced(t.Context(), "request")
		r, err := s.CreateRefund(ctx, "acct_test", p.ID, 500)
		request.End()
		if err != nil {
			t.Fatal(err)
		}
		proc.NotifyRefund()
		if got := awaitRefund(t, s, p.ID, r.ID); got.State != StateSucceeded {
			t.Fatalf("refund %s, want succeeded", got.State)
		}
		if err := proc.Stop(t.Context()); err != nil { // the attempt's span has ended
			t.Fatal(err)
		}
		accept := rec.span(t, "payd.refund.accept", refundIDKey, r.ID)
		attempt := rec.span(t, "payd.refund.attempt", refundIDKey, r.ID)
		settle := rec.span(t, "payd.refund.settle", refundIDKey, r.ID)
		if attempt.Parent().SpanID() != accept.SpanContext().SpanID() || attempt.SpanContext().TraceID() != request.SpanContext().TraceID() {
			t.Fatalf("the refund's attempt is not a child of its accept span, in the request's trace")
		}
		if settle.Parent().SpanID() != attempt.SpanContext().SpanID() {
			t.Fatalf("the refund's settlement is not a child of its attempt")
		}
		if !hasAttr(attempt, stateKey, StateSucceeded) {
			t.Fatalf("the attempt's attributes %v do not say it succeeded", attempt.Attributes())
		}
		// The payment, accepted untraced, was worked on in a trace of its own.
		charge := rec.span(t, "payd.payment.attempt", paymentIDKey, p.ID)
		if charge.Parent().IsValid() {
			t.Fatalf("the attempt at a payment accepted untraced has a parent: %v", charge.Parent())
		}
	})
}

func hasAttr(s sdktrace.ReadOnlySpan, key attribute.Key, value string) bool {
	for _, a := range s.Attributes() {
		if a.Key == key && a.Value.AsString() == value {
			return true
		}
	}
	return false
}

// TestTraceContextMigration: a payment accepted before 0007 has no trace
// context, and is claimed as one accepted untraced.
func TestTraceContextMigration(t *testing.T) {
	eachUnmigrated(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		err := s.db.InTx(ctx, func(q database.Querier) error {
			if err := s.applyMigrations(ctx, q, "0007"); err != nil {
				return err
			}
			for _, stmt := range []string{
				`INSERT INTO accounts (id, name, api_key_hash, created_at) VALUES ('acct_test', 'test', 'h', 0)`,
				`INSERT INTO payments (id, account_id, amount, currency, reference, state, next_attempt_at, provider_key, created_at, updated_at)
					VALUES ('ch_old', 'acct_test', 700, 'usd', 'r', 'pending', 0, 'payd_ch_old', 5, 5)`,
			} {
				if _, err := q.Exec(ctx, stmt); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		if c, err := s.ClaimDue(ctx, time.Minute); err != nil || c == nil || c.ID != "ch_old" || c.TraceParent != "" {
			t.Fatalf("claim after 0005 = %+v %v, want ch_old with no traceparent", c, err)
		}
	})
}
