package chaos

import (
	"bytes"
	"fmt"
	"sync"
	"time"
)

// seen is a 2xx a client got.
type seen struct {
	Status int           `json:"status"`
	ID     string        `json:"id"`
	State  string        `json:"state"` // the charge's status in the body
	At     time.Duration `json:"at"`    // since the charge's first request
}

// record is what happened to one charge, as its client saw it.
type record struct {
	plan  plan
	start time.Time

	mu         sync.Mutex
	seen       []seen
	accepted   time.Duration // to the first 2xx; 0 if none
	settled    time.Duration // to the first final status seen; 0 if none
	final      string
	unexpected []string
	refund     *refundSeen
	phase      string        // accept, settle, refund or done: where the client is
	last       string        // what the client last got while it waited, for a report
	stopped    time.Duration // after this its client stopped following (settlePatience); 0 if it did not
	running    bool          // its client is still running
	cameBack   bool          // it saw its outcome only when it came back after the drain
}

type refundSeen struct {
	ID     string `json:"id"`
	Amount int64  `json:"amount"`
	Status string `json:"status"` // as last seen
	Final  bool
}

func (r *record) add(s seen) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, s)
	if r.accepted == 0 {
		r.accepted = s.At
	}
	if isFinal(s.State) && r.settled == 0 {
		r.settled, r.final = s.At, s.State
	}
}

func (r *record) settle(state string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.settled == 0 {
		r.settled, r.final = max(time.Since(r.start), time.Nanosecond), state
	}
}

func (r *record) firstSeen() (seen, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.seen) == 0 {
		return seen{}, false
	}
	return r.seen[0], true
}

func (r *record) setPhase(phase string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.phase = phase
}

// heard records the last answer a waiting client got.
func (r *record) heard(a answer, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.last = err.Error()
	} else {
		r.last = fmt.Sprintf("%d %.200s", a.status, bytes.TrimSpace(a.body))
	}
}

func (r *record) note(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unexpected = append(r.unexpected, s)
}

// waitingOn is the id of the payment or refund the client waits to see
// final, or "" when it waits for an answer to a POST. The caller holds
// r.mu.
func (r *record) waitingOn() string {
	switch {
	case r.phase == "settle" && len(r.seen) > 0:
		return r.seen[0].ID
	case r.phase == "refund" && r.refund != nil:
		return r.refund.ID
	}
	return ""
}

func isFinal(state string) bool { return state == "succeeded" || state == "failed" }
