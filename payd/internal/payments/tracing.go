package payments

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// A payment's life as OpenTelemetry spans. A payment is accepted in one
// request and worked on later, by a worker of any process, so the W3C
// trace context (traceparent) of its accept span is kept in its row, and
// each worker attempt is a child of that span: the accept, every attempt,
// the provider calls inside them and the worker's settlement make one
// trace (TestChargeIsOneTrace in cmd/payd). A settlement by a webhook or
// a reconciliation run belongs to that request's or run's trace, and links
// to the payment's. Refunds are traced the same way.
//
// Spans, with the attributes below:
//
//	payd.payment.accept, payd.refund.accept      the row's insert, in the accepting request's transaction
//	payd.payment.attempt, payd.refund.attempt    a worker's attempt: claimed, provider called, outcome recorded
//	payd.payment.settle, payd.refund.settle      an outcome's write, with its ledger postings
//	payd.reconcile                               a reconciliation run
//
// The Processor's and the Reconciler's spans come from the TracerProvider
// in their config, which defaults to none (a no-op). The Store's own
// spans (accept, settle) come from the provider of the span in the
// caller's context (the API's request span, a worker's attempt, a
// reconciliation run), so the Store needs no configuration and an
// untraced caller pays for a no-op.

// scope names this package to tracer providers.
const scope = "github.com/idemhq/idem/payd/internal/payments"

// Span attributes.
const (
	paymentIDKey   = attribute.Key("payd.payment_id")
	refundIDKey    = attribute.Key("payd.refund_id")
	providerKeyKey = attribute.Key("payd.provider_key")
	fenceKey       = attribute.Key("payd.fence")
	attemptKey     = attribute.Key("payd.attempt")
	claimedFromKey = attribute.Key("payd.claimed_from")
	stateKey       = attribute.Key("payd.state")      // the state recorded
	settledByKey   = attribute.Key("payd.settled_by") // worker, webhook or reconciliation
	fencedKey      = attribute.Key("payd.fenced")     // the write was refused: the fence had moved on
	changedKey     = attribute.Key("payd.changed")    // a settlement by key found the row not yet final
)

// traceparentOf is the W3C traceparent of the span in ctx, or "" if ctx
// carries none (tracing is off).
func traceparentOf(ctx context.Context) string {
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, c)
	return c["traceparent"]
}

// withParent is ctx with the stored traceparent as its remote parent; ctx
// itself if there is none, or it cannot be read.
func withParent(ctx context.Context, traceparent string) context.Context {
	if traceparent == "" {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": traceparent})
}

// linkTo links the span in ctx to the span a stored traceparent names.
func linkTo(ctx context.Context, traceparent string) {
	if sc := trace.SpanContextFromContext(withParent(context.Background(), traceparent)); sc.IsValid() {
		trace.SpanFromContext(ctx).AddLink(trace.Link{SpanContext: sc})
	}
}

// startSpan starts a span, a child of ctx's, made by the provider of the
// span in ctx: a no-op if ctx has none.
func startSpan(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	return trace.SpanFromContext(ctx).TracerProvider().Tracer(scope).Start(ctx, name, trace.WithAttributes(attrs...))
}

// endSpan ends span, marking it failed if err is. A refusal is no
// failure: a fence that moved on (recorded as payd.fenced), no such
// payment, a refund the payment cannot take.
func endSpan(span trace.Span, err error) {
	markSpan(span, err)
	span.End()
}

func markSpan(span trace.Span, err error) {
	_, refused := errors.AsType[*RefundRefused](err)
	switch {
	case errors.Is(err, ErrFenced):
		span.SetAttributes(fencedKey.Bool(true))
	case err != nil && !refused && !errors.Is(err, ErrNotFound):
		span.SetStatus(codes.Error, err.Error())
	}
}

// startSettle starts the span of a write of o, for the payment or refund
// (kind) id, by a worker, a webhook or reconciliation.
func startSettle(ctx context.Context, kind string, id attribute.KeyValue, o Outcome, by string) (context.Context, trace.Span) {
	return startSpan(ctx, "payd."+kind+".settle", id, stateKey.String(o.State), settledByKey.String(by))
}

// startAttempt starts the span of a worker's attempt at t: a child of the
// span that accepted t, when that was traced.
func (p *Processor) startAttempt(ctx context.Context, t *task) (context.Context, trace.Span) {
	id := paymentIDKey.String(t.id)
	if t.kind == "refund" {
		id = refundIDKey.String(t.id)
	}
	return p.tracer.Start(withParent(ctx, t.traceparent), "payd."+t.kind+".attempt", trace.WithAttributes(
		id, fenceKey.Int64(t.fence), attemptKey.Int(t.attempts), claimedFromKey.String(t.from)))
}

// attempted records on the attempt's span the outcome it wrote, or why
// it wrote none.
func attempted(ctx context.Context, o Outcome, err error) {
	span := trace.SpanFromContext(ctx)
	span.SetAttributes(stateKey.String(o.State))
	markSpan(span, err)
}

// RunOnce compares the provider's charges and refunds and payd's payments
// and refunds created in the window ending Grace ago, and records the run,
// in a span of its own.
func (r *Reconciler) RunOnce(ctx context.Context) (*ReconciliationRun, error) {
	ctx, span := r.tracer.Start(ctx, "payd.reconcile")
	run, err := r.runOnce(ctx)
	if run != nil {
		span.SetAttributes(attribute.Int("payd.matched", run.Matched), attribute.Int("payd.fixed", run.Fixed),
			attribute.Int("payd.mismatches", run.Mismatches))
	}
	endSpan(span, err)
	return run, err
}
