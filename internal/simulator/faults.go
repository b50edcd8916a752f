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
	latency   time.Duration
	fail      bool
	rateLimit bool
	decline   bool
	drop      bool
	hang      bool
	hangFor   time.Duration
}

type decisionKey struct{}

// decide draws one request's faults: always six draws, whatever the
// faults, so that changing one rate never shifts the others' draws.
func (s *Sim) decide() decision {
	f := s.faults.Load()
	var u [6]float64
	s.draw(u[:])
	return decision{
		latency:   uniform(u[0], f.LatencyMin, f.LatencyMax),
		fail:      u[1] < f.ErrorRate,
		rateLimit: u[2] < f.RateLimitRate,
		decline:   u[3] < f.DeclineRate,
		drop:      u[4] < f.DropAfterChargeRate,
		hang:      u[5] < f.HangRate,
		hangFor:   or(f.HangFor, DefaultHangFor),
	}
}

// withFaults injects the faults into an API handler. It reads the request
// in full, waits out the latency, and answers 500 or 429 without calling
// next; otherwise next acts and answers into a buffer, and withFaults
// sends that answer, holds it, or drops the connection instead.
func (s *Sim) withFaults(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.closed() {
			writeError(w, &apiError{http.StatusServiceUnavailable, "unavailable", "the simulator is closed"})
			return
		}
		s.stats.requests.Add(1)
		d := s.decide()

		// Read the whole request first: from here on the provider has it,
		// and acts on it even if the client gives up.
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
		if err != nil {
			writeError(w, invalid("reading the request: "+err.Error()))
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		if d.latency > 0 && !s.sleep(d.latency, nil) {
			panic(http.ErrAbortHandler) // closed meanwhile
		}

		switch {
		case d.fail:
			s.stats.errors.Add(1)
			writeError(w, &apiError{http.StatusInternalServerError, "server_error", "injected fault: nothing was done"})
			return
		case d.rateLimit:
			s.stats.rateLimited.Add(1)
			w.Header().Set("Retry-After", "1")
			writeError(w, &apiError{http.StatusTooManyRequests, "rate_limited", "injected fault: nothing was done"})
			return
		}

		var buf bufferedResponse
		next.ServeHTTP(&buf, r.WithContext(context.WithValue(r.Context(), decisionKey{}, d)))

		switch {
		case d.drop:
			s.stats.drops.Add(1)
			// Hijack and close: the client sees the connection end with
			// no response. Where hijacking is impossible (HTTP/2), the
			// abort resets the stream instead.
			conn, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				panic(http.ErrAbortHandler)
			}
			conn.Close()
			return
		case d.hang:
			s.stats.hangs.Add(1)
			if !s.sleep(d.hangFor, r.Context().Done()) {
				panic(http.ErrAbortHandler) // the client left, or the simulator closed
			}
		}
		buf.writeTo(w)
	})
}

// decisionFrom returns the request's faults, as withFaults drew them.
func decisionFrom(ctx context.Context) decision {
	d, _ := ctx.Value(decisionKey{}).(decision)
	return d
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
