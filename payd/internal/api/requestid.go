package api

import (
	"context"
	"crypto/rand"
	"log/slog"
	"strings"
)

// maxRequestIDLen bounds an X-Request-Id payd takes from a client or a
// proxy in front; a longer one is replaced.
const maxRequestIDLen = 128

// requestID is the id of a request that came with header value h (its
// X-Request-Id): h itself if it is sane, 1 to maxRequestIDLen printable
// ASCII characters without spaces, and otherwise a new random id
// (TestRequestIDs).
func requestID(h string) string {
	if len(h) == 0 || len(h) > maxRequestIDLen {
		return newRequestID()
	}
	for i := range len(h) {
		if h[i] < '!' || h[i] > '~' {
			return newRequestID()
		}
	}
	return h
}

func newRequestID() string { return "req_" + strings.ToLower(rand.Text()) }

// RequestID returns the id of the API request whose context ctx is or
// derives from, or "" outside one.
func RequestID(ctx context.Context) string {
	if e := exchangeFrom(ctx); e != nil {
		return e.id
	}
	return ""
}

// LogRequestIDs returns h, adding to each record logged in the context of
// an API request that request's id, as request_id: the lines a request's
// handlers, its idempotency layer and the engine log under it can then be
// found from its access-log line (TestAccessLog).
func LogRequestIDs(h slog.Handler) slog.Handler { return requestIDHandler{h} }

type requestIDHandler struct{ slog.Handler }

func (h requestIDHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := RequestID(ctx); id != "" && !hasAttr(r, "request_id") {
		r = r.Clone()
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

func (h requestIDHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return requestIDHandler{h.Handler.WithAttrs(as)}
}

func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{h.Handler.WithGroup(name)}
}

// hasAttr reports whether r has a top-level attribute named key, such as
// the access log's own request_id.
func hasAttr(r slog.Record, key string) bool {
	found := false
	r.Attrs(func(a slog.Attr) bool {
		found = a.Key == key
		return !found
	})
	return found
}
