package api

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/idemhq/idem/payd/internal/payments"
)

// preferWait serves Prefer: wait=N (RFC 7240). The idempotent layer inside
// answers as usual, 202 with the accepted charge, recorded and replayed
// byte for byte. When the client asked to wait, the answer it gets instead
// is the charge's current state once it is final, or when N seconds (at
// most MaxPreferWait) have passed: 200 if final, else 202, with
// Preference-Applied: wait=M, M the wait it was given, N capped
// (TestPreferenceApplied). A replayed request that asks to wait gets the
// current state too, still marked Idempotent-Replayed. A request answered
// otherwise, a 4xx or a 409 for one in flight, has no Preference-Applied:
// it was not kept waiting.
//
// A charge accepted and committed by this request is handed to a worker of
// this process at once (Processor.Dispatch).
func (s *server) preferWait(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wait, ok := preferredWait(r.Header.Values("Prefer"))
		rec := &captured{header: http.Header{}}
		acc := &accepted{awaitSettled: ok}
		defer acc.stop()
		next.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), acceptedKey{}, acc)))
		replayed := rec.header.Get("Idempotent-Replayed") == "true"
		if rec.status == http.StatusAccepted {
			s.hit(FailpointAfterAccept)
		}
		switch {
		case replayed:
			s.metrics.replays.Inc()
		case rec.status == http.StatusAccepted:
			s.metrics.accepts.Inc()
			if s.processor != nil && acc.id != "" {
				s.processor.Dispatch(acc.id)
			}
		}
		if !ok || rec.status != http.StatusAccepted {
			rec.writeTo(w)
			return
		}
		id := acc.id // the charge this request created
		if replayed || id == "" {
			// The handler did not run: the charge is the recorded one.
			acc.stop()
			var c payments.Charge
			if err := json.Unmarshal(rec.body.Bytes(), &c); err != nil || c.ID == "" {
				rec.writeTo(w)
				return
			}
			id = c.ID
		}
		wait = min(wait, s.maxWait)
		p, err := s.awaitFinal(r, id, wait, acc.settled)
		// RFC 7240: the wait this request was given, capped.
		w.Header().Set("Preference-Applied", "wait="+strconv.Itoa(int(wait/time.Second)))
		if err != nil {
			if r.Context().Err() == nil { // else the client went away: nobody to tell
				s.log.WarnContext(r.Context(), "payd: waiting for a charge failed; answering with its accepted state", slog.String("payment", id), slog.Any("error", err))
			}
			rec.writeTo(w)
			return
		}
		for _, h := range []string{"Idempotent-Replayed", "Location"} {
			if v := rec.header.Get(h); v != "" {
				w.Header().Set(h, v)
			}
		}
		status := http.StatusAccepted
		if p.Final() {
			status = http.StatusOK
		}
		encode(w, status, p.Charge())
	})
}

// maxPreferSeconds bounds the wait preferredWait reads, far above any cap
// (TestPreferenceApplied).
const maxPreferSeconds = 1 << 20

// preferredWait parses the wait preference of Prefer header values.
func preferredWait(values []string) (time.Duration, bool) {
	for _, v := range values {
		for _, pref := range strings.Split(v, ",") {
			name, val, ok := strings.Cut(strings.TrimSpace(pref), "=")
			if !ok || !strings.EqualFold(strings.TrimSpace(name), "wait") {
				continue
			}
			val, _, _ = strings.Cut(val, ";") // a preference's parameters, none of them wait's
			n, err := strconv.Atoi(strings.Trim(strings.TrimSpace(val), `"`))
			if err != nil || n < 0 {
				return 0, false
			}
			// Above any cap, and small enough not to overflow a Duration.
			return time.Duration(min(n, maxPreferSeconds)) * time.Second, true
		}
	}
	return 0, false
}

// accepted is what createCharge tells preferWait of the charge it created:
// its id and, when the client waits, a wait for its settlement, registered
// inside the accept transaction, so that no worker can settle the charge
// before the wait is in place and awaitFinal need not read it first.
type accepted struct {
	awaitSettled bool // set by preferWait: the client waits
	id           string
	settled      <-chan *payments.Payment
	done         func()
}

type acceptedKey struct{}

// accept tells preferWait that this request's handler created charge id.
func (s *server) accept(ctx context.Context, id string) {
	acc, ok := ctx.Value(acceptedKey{}).(*accepted)
	if !ok {
		return
	}
	acc.stop() // an earlier attempt's, rolled back
	acc.id = id
	if acc.awaitSettled && s.processor != nil {
		acc.settled, acc.done = s.processor.AwaitSettled(id)
	}
}

// stop ends the wait, if any, and forgets the charge.
func (acc *accepted) stop() {
	if acc.done != nil {
		acc.done()
	}
	acc.id, acc.settled, acc.done = "", nil, nil
}

// awaitFinal returns the payment once it is final, or as it is when wait
// has passed or the process starts stopping (TestWaitEndsWhenDraining). A settlement by this process's workers arrives on settled
// (nil: none registered yet, so one is registered here); one by another
// process is seen within a poll. It returns ctx's error if the client goes
// away first.
func (s *server) awaitFinal(r *http.Request, id string, wait time.Duration, settled <-chan *payments.Payment) (*payments.Payment, error) {
	ctx := r.Context()
	read := func() (*payments.Payment, error) { return s.store.Get(ctx, accountFrom(ctx), id) }
	if settled == nil {
		if s.processor != nil {
			ch, done := s.processor.AwaitSettled(id)
			defer done()
			settled = ch
		}
		// It may have settled before the wait was in place.
		if p, err := read(); err != nil || p.Final() {
			return p, err
		}
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	poll := time.NewTicker(pollFinal)
	defer poll.Stop()
	for {
		select {
		case p := <-settled:
			if p != nil && p.Final() {
				return p, nil
			}
		case <-poll.C:
			if s.draining != nil && s.draining() {
				// Stopping: answer now, so the stop need not wait out the
				// wait; the client polls another replica.
				return read()
			}
		case <-deadline.C:
			return read()
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if p, err := read(); err != nil || p.Final() {
			return p, err
		}
	}
}

// pollFinal is how often a waiting request reads a payment another process
// may settle.
const pollFinal = 100 * time.Millisecond

// captured is a response held back so preferWait can decide what to send.
type captured struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (c *captured) Header() http.Header { return c.header }

func (c *captured) WriteHeader(status int) {
	if c.status == 0 {
		c.status = status
	}
}

func (c *captured) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	return c.body.Write(b)
}

func (c *captured) writeTo(w http.ResponseWriter) {
	for k, v := range c.header {
		w.Header()[k] = v
	}
	if c.status == 0 {
		c.status = http.StatusOK
	}
	w.WriteHeader(c.status)
	w.Write(c.body.Bytes())
}
