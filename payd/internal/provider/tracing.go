package provider

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// scope names this package to tracer providers.
const scope = "github.com/idemhq/idem/payd/internal/provider"

// providerKeyKey is the idempotency key a call was sent under, to find
// the call in the provider's records.
const providerKeyKey = attribute.Key("payd.provider_key")

// send is roundTrip, in a client span when the Client traces
// (ClientConfig.TracerProvider): named by method and path, such as
// "POST /charges" (a path names no charge or refund: lookups go by query),
// with the HTTP semantic conventions' attributes. As those conventions
// have it for a client, the span fails when no answer came or the answer's
// status is 400 or more: a decline included.
func (c *Client) send(ctx context.Context, method string, u *url.URL, key string, body []byte) (response, error) {
	if c.tracer == nil {
		return c.roundTrip(ctx, method, u, key, body)
	}
	path := "/" + strings.TrimPrefix(u.Path, "/") // as sent: a base URL without a path joins to "charges"
	attrs := []attribute.KeyValue{semconv.HTTPRequestMethodKey.String(method), semconv.ServerAddress(u.Hostname()), semconv.URLPath(path)}
	if port, err := strconv.Atoi(u.Port()); err == nil {
		attrs = append(attrs, semconv.ServerPort(port))
	}
	if key != "" {
		attrs = append(attrs, providerKeyKey.String(key))
	}
	ctx, span := c.tracer.Start(ctx, method+" "+path, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	defer span.End()
	resp, err := c.roundTrip(ctx, method, u, key, body)
	switch {
	case err != nil:
		span.SetAttributes(semconv.ErrorTypeKey.String(KindOf(err).String()))
		span.SetStatus(codes.Error, err.Error())
	case resp.status >= 400:
		span.SetAttributes(semconv.HTTPResponseStatusCode(resp.status), semconv.ErrorTypeKey.String(strconv.Itoa(resp.status)))
		span.SetStatus(codes.Error, "")
	default:
		span.SetAttributes(semconv.HTTPResponseStatusCode(resp.status))
	}
	return resp, err
}

// inject writes the W3C trace context of the span in ctx into h, when the
// Client traces.
func (c *Client) inject(ctx context.Context, h http.Header) {
	if c.tracer != nil {
		propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(h))
	}
}
