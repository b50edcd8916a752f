package api

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// exchange is what one request's handlers tell the access log about it,
// through the request's context: the route that matched, the account it
// authenticated as, and what the idempotency layer did. id is fixed when
// the request arrives; the rest is filled in by the handlers, in the
// request's goroutine, and read once they return.
type exchange struct {
	id         string
	route      string
	account    string
	idempotent bool // the request went through the idempotency layer
	executed   bool // and the handler behind it ran
}

type exchangeKey struct{}

func exchangeFrom(ctx context.Context) *exchange {
	e, _ := ctx.Value(exchangeKey{}).(*exchange)
	return e
}

// Idempotency outcomes, as the access log names them.
const (
	outcomeExecuted = "executed" // the handler ran
	outcomeReplayed = "replayed" // a recorded response was sent again
	outcomeConflict = "conflict" // the key is in flight (409) or was used for another request (422)
)

// outcome is what the idempotency layer did with a request answered with
// status and header h, or "" if the layer did not apply or refused the
// request before looking up its key.
func (e *exchange) outcome(status int, h http.Header) string {
	switch {
	case !e.idempotent:
		return ""
	case e.executed:
		return outcomeExecuted
	case h.Get("Idempotent-Replayed") == "true":
		return outcomeReplayed
	case status == http.StatusConflict || status == http.StatusUnprocessableEntity:
		return outcomeConflict
	}
	return ""
}

// noteAccount records, for the access log, the account a request
// authenticated as.
func noteAccount(ctx context.Context, account string) {
	if e := exchangeFrom(ctx); e != nil {
		e.account = account
	}
}

// noteIdempotency wraps the idempotency middleware mw so that the access
// log learns whether a request went through it and whether the handler
// behind it ran.
func noteIdempotency(mw func(http.Handler) http.Handler) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		inner := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if e := exchangeFrom(r.Context()); e != nil {
				e.executed = true
			}
			next.ServeHTTP(w, r)
		}))
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if e := exchangeFrom(r.Context()); e != nil {
				e.idempotent = true
			}
			inner.ServeHTTP(w, r)
		})
	}
}

// recordRoute serves next and records the pattern that matched, which the
// mux inside sets on the request it is given. Every handler between it
// and the mux must pass the request on as it is, so the request it reads
// is the one the mux saw.
func recordRoute(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r)
		// A CONNECT request's redirect carries its raw path as the
		// pattern; the API has no CONNECT route.
		if r.Pattern == "" || r.Method == http.MethodConnect {
			return
		}
		if e := exchangeFrom(r.Context()); e != nil {
			e.route = r.Pattern
		}
		// The request's server span, if it is traced, is named by its
		// route too (TestChargeIsOneTrace): the tracing handler outside
		// never sees the request the mux set the pattern on.
		trace.SpanFromContext(r.Context()).SetName(r.Pattern)
	})
}

// observed is the API's front: every request gets an id (X-Request-Id,
// echoed on the response), is counted and timed by route, and leaves one
// access-log line, whatever answers it: a handler, authentication, the
// idempotency layer or the mux's 404. The line has the method, route,
// status, duration, request id, account and idempotency outcome; never
// the raw path, a header's value, a body or a key (TestAccessLog).
func (s *server) observed(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		e := &exchange{id: requestID(r.Header.Get("X-Request-Id")), route: unmatchedRoute}
		w.Header().Set("X-Request-Id", e.id)
		sw := &statusWriter{ResponseWriter: w}
		ctx := context.WithValue(r.Context(), exchangeKey{}, e)
		next.ServeHTTP(sw, r.WithContext(ctx))
		took := time.Since(start)
		status := sw.status
		if status == 0 {
			status = http.StatusOK
		}
		method := methodLabel(r.Method)
		s.http.observe(e.route, method, status, took)
		attrs := []slog.Attr{
			slog.String("method", method), slog.String("route", e.route), slog.Int("status", status),
			slog.Float64("duration_seconds", took.Seconds()), slog.String("request_id", e.id),
			slog.Int64("bytes", sw.bytes), slog.String("remote", r.RemoteAddr),
		}
		if e.account != "" {
			attrs = append(attrs, slog.String("account", e.account))
		}
		if o := e.outcome(status, w.Header()); o != "" {
			attrs = append(attrs, slog.String("idempotency", o))
		}
		s.log.LogAttrs(ctx, slog.LevelInfo, "payd: request", attrs...)
	})
}

// statusWriter remembers the status and size of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Flush passes on, for handlers that assert http.Flusher.
func (w *statusWriter) Flush() { http.NewResponseController(w.ResponseWriter).Flush() }

// Unwrap gives http.ResponseController the connection's writer, for
// deadlines.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
