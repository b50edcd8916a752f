package api

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/idemhq/idem/internal/failpoint"
	"github.com/idemhq/idem/internal/payments"
)

// preferWait serves Prefer: wait=N (RFC 7240). The idempotent layer inside
// answers as usual, 202 with the accepted charge, recorded and replayed
// byte for byte. When the client asked to wait, the answer it gets instead
// is the charge's current state once it is final, or when N seconds (at
// most MaxPreferWait) have passed: 200 if final, else 202. A replayed
// request that asks to wait gets the current state too, still marked
// Idempotent-Replayed.
func (s *server) preferWait(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wait, ok := preferredWait(r.Header.Values("Prefer"))
		rec := &captured{header: http.Header{}}
		next.ServeHTTP(rec, r)
		if rec.status == http.StatusAccepted {
			s.fps.Hit(failpoint.AfterAccept)
		}
		switch {
		case rec.header.Get("Idempotent-Replayed") == "true":
			s.metrics.replays.Inc()
		case rec.status == http.StatusAccepted:
			s.metrics.accepts.Inc()
		}
		if !ok || rec.status != http.StatusAccepted {
			rec.writeTo(w)
			return
		}
		var c payments.Charge
		if err := json.Unmarshal(rec.body.Bytes(), &c); err != nil || c.ID == "" {
			rec.writeTo(w)
			return
		}
		p, err := s.awaitFinal(r, c.ID, min(wait, s.maxWait))
		if err != nil {
			s.log.Warn("payd: waiting for a charge failed; answering with its accepted state", slog.String("payment", c.ID), slog.Any("error", err))
			rec.writeTo(w)
			return
		}
		for _, h := range []string{"Idempotent-Replayed", "Location"} {
			if v := rec.header.Get(h); v != "" {
				w.Header().Set(h, v)
			}
		}
		w.Header().Set("Preference-Applied", "wait="+strconv.Itoa(int(wait/time.Second)))
		status := http.StatusAccepted
		if p.Final() {
			status = http.StatusOK
		}
		encode(w, status, p.Charge())
	})
}

// preferredWait parses the wait preference of Prefer header values.
func preferredWait(values []string) (time.Duration, bool) {
	for _, v := range values {
		for _, pref := range strings.Split(v, ",") {
			name, val, ok := strings.Cut(strings.TrimSpace(pref), "=")
			if !ok || !strings.EqualFold(strings.TrimSpace(name), "wait") {
				continue
			}
			n, err := strconv.Atoi(strings.Trim(strings.TrimSpace(val), `"`))
			if err != nil || n < 0 {
				return 0, false
			}
			return time.Duration(n) * time.Second, true
		}
	}
	return 0, false
}

// awaitFinal returns the payment once it is final, or as it is when wait
// has passed or the client has gone. A settlement by this process's
// workers wakes it at once; one by another process is seen within a poll.
func (s *server) awaitFinal(r *http.Request, id string, wait time.Duration) (*payments.Payment, error) {
	ctx := r.Context()
	var settled <-chan struct{}
	if s.processor != nil {
		ch, done := s.processor.AwaitSettled(id)
		defer done()
		settled = ch
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	poll := time.NewTicker(pollFinal)
	defer poll.Stop()
	for {
		p, err := s.store.Get(ctx, accountFrom(ctx), id)
		if err != nil || p.Final() {
			return p, err
		}
		select {
		case <-settled:
		case <-poll.C:
		case <-deadline.C:
			return s.store.Get(ctx, accountFrom(ctx), id)
		case <-ctx.Done():
			return p, nil
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
