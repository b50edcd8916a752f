package simulator

import (
	"bytes"
	"cmp"
	"context"
	"io"
	"maps"
	"net/http"
	"time"
)

// decision is what the faults hold for one request, drawn on arrival.
type decision struct {
	latency     time.Duration
	fail        bool
	rateLimit   bool
	decline     bool
	drop        bool
	hang        bool
	hangFor     time.Duration
	late        bool
	lateAfter   time.Duration
	inFlight    bool
	otherAmount bool
}

// drawsPerRequest is how many draws decide takes, whatever the faults.
const drawsPerRequest = 10

// decide draws one request's faults: always drawsPerRequest draws, in a
// fixed order, whatever the faults, so that changing one rate never
// shifts the others' draws. New faults take new draws at the end.
func (s *Sim) decide() decision {
	f := s.faults.Load()
	var u [drawsPerRequest]float64
	s.draw(u[:])
	return decision{
		latency:     uniform(u[0], f.LatencyMin, f.LatencyMax),
		fail:        u[1] < f.ErrorRate,
		rateLimit:   u[2] < f.RateLimitRate,
		decline:     u[3] < f.DeclineRate,
		drop:        u[4] < f.DropAfterChargeRate,
		hang:        u[5] < f.HangRate,
		hangFor:     or(f.HangFor, DefaultHangFor),
		late:        u[6] < f.LateRate,
		lateAfter:   lateDelay(u[7], f),
		inFlight:    u[8] < f.InFlightRate,
		otherAmount: u[9] < f.OtherAmountRate,
	}
}

// lateDelay maps a draw onto a late execution's delay.
func lateDelay(u float64, f *Faults) time.Duration {
	if f.LateMin == 0 && f.LateMax == 0 {
		return DefaultLateFor
	}
	return uniform(u, f.LateMin, f.LateMax)
}

// call is one API request as its handler sees it: the faults it drew,
// and, once the handler has deferred it to a late execution, the channel
// closed when that execution comes due.
type call struct {
	decision
	lost <-chan struct{}
}

type callKey struct{}

// callFrom returns the request's call, as withFaults made it; a request
// that did not come through withFaults draws no faults.
func callFrom(ctx context.Context) *call {
	if c, ok := ctx.Value(callKey{}).(*call); ok {
		return c
	}
	return &call{}
}

// withFaults injects the faults into an API handler. It reads the request
// in full, waits out the latency, and answers 500, 429 or 409 without
// calling next; otherwise next acts and answers into a buffer, and
// withFaults sends that answer, holds it, or drops the connection instead.
// A request deferred to a late execution is held until it comes due or
// the client leaves, then dropped.
//
// space names the idempotency keys of a POST route, which withFaults
// tracks as in flight from now until the request is answered or dropped;
// it is empty for routes without keys.
func (s *Sim) withFaults(space keyspace, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.closed() {
			writeError(w, &apiError{http.StatusServiceUnavailable, "unavailable", "the simulator is closed"})
			return
		}
		seq := uint64(s.stats.requests.Add(1)) // orders the requests under a key
		c := &call{decision: s.decide()}
		var k slot
		release := func() {}
		if key := r.Header.Get("Idempotency-Key"); space != "" && key != "" && len(key) <= maxKeyLen {
			k = slot{space, key}
			release = s.enter(k, seq)
			defer release() // on an abort
		}
		// Every path below releases the key before the client can see
		// its answer or its dropped connection, so that a request it sends
		// next never finds the key still in use by this one.
		refuse := func(e *apiError) {
			release()
			writeError(w, e)
		}

		// Read the whole request first: from here on the provider has it,
		// and acts on it even if the client gives up.
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
		if err != nil {
			refuse(invalid("reading the request: " + err.Error()))
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		if c.latency > 0 && !s.sleep(c.latency, nil) {
			panic(http.ErrAbortHandler) // closed meanwhile
		}

		switch {
		case c.fail:
			s.stats.errors.Add(1)
			refuse(&apiError{http.StatusInternalServerError, "server_error", "injected fault: nothing was done"})
			return
		case c.rateLimit:
			s.stats.rateLimited.Add(1)
			w.Header().Set("Retry-After", "1")
			refuse(&apiError{http.StatusTooManyRequests, "rate_limited", "injected fault: nothing was done"})
			return
		case k.key != "" && s.inUse(k, seq, c.inFlight):
			refuse(inUse(k.key))
			return
		}

		var buf bufferedResponse
		next.ServeHTTP(&buf, r.WithContext(context.WithValue(r.Context(), callKey{}, c)))

		switch {
		case c.lost != nil:
			// Deferred: the response is lost, whenever the client notices.
			select {
			case <-c.lost:
			case <-r.Context().Done():
			case <-s.done:
			}
			release()
			drop(w)
			return
		case c.drop:
			s.stats.drops.Add(1)
			release()
			drop(w)
			return
		case c.hang:
			s.stats.hangs.Add(1)
			if !s.sleep(c.hangFor, r.Context().Done()) {
				panic(http.ErrAbortHandler) // the client left, or the simulator closed
			}
		}
		release()
		buf.writeTo(w)
	})
}

// drop closes the request's connection without a response: hijacked and
// closed, the client sees the connection end. Where hijacking is
// impossible (HTTP/2), the abort resets the stream instead.
func drop(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	conn.Close()
}

// sleep waits d and reports true, or false as soon as the simulator closes
// or cancel is closed.
func (s *Sim) sleep(d time.Duration, cancel <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.done:
		return false
	case <-cancel:
		return false
	}
}

// bufferedResponse holds a handler's answer until withFaults decides what
// to do with it.
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header {
	if b.header == nil {
		b.header = http.Header{}
	}
	return b.header
}

func (b *bufferedResponse) WriteHeader(status int) {
	if b.status == 0 {
		b.status = status
	}
}

func (b *bufferedResponse) Write(p []byte) (int, error) {
	b.WriteHeader(http.StatusOK)
	return b.body.Write(p)
}

func (b *bufferedResponse) writeTo(w http.ResponseWriter) {
	maps.Copy(w.Header(), b.header)
	w.WriteHeader(cmp.Or(b.status, http.StatusOK))
	_, _ = w.Write(b.body.Bytes()) // a failed write means the client is gone
}
