package simulator

import (
	"fmt"
	"net/http"
	"slices"
)

// keyspace is a namespace of idempotency keys: charge keys and refund
// keys are separate.
type keyspace string

const (
	chargeKeys keyspace = "charges"
	refundKeys keyspace = "refunds"
)

// slot is one idempotency key in its namespace.
type slot struct {
	space keyspace
	key   string
}

// enter records the request seq as in flight under k, and returns the
// function that records it done; calling that again does nothing.
func (s *Sim) enter(k slot, seq uint64) (release func()) {
	s.mu.Lock()
	s.inFlight[k] = append(s.inFlight[k], seq)
	s.mu.Unlock()
	released := false
	return func() {
		if released {
			return
		}
		released = true
		s.mu.Lock()
		defer s.mu.Unlock()
		seqs := slices.DeleteFunc(s.inFlight[k], func(o uint64) bool { return o == seq })
		if len(seqs) == 0 {
			delete(s.inFlight, k)
		} else {
			s.inFlight[k] = seqs
		}
	}
}

// inUse reports whether request seq must be answered 409 under k: always
// if k is pending a late execution, and, if the request drew the
// in-flight fault, if an earlier request under k is still in flight. It
// counts the conflict.
func (s *Sim) inUse(k slot, seq uint64, inFlight bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	busy := s.pending[k] != nil ||
		inFlight && slices.ContainsFunc(s.inFlight[k], func(o uint64) bool { return o < seq })
	if busy {
		s.stats.inFlightConflicts.Add(1)
	}
	return busy
}

// inUse is the 409 for a key another request is processing.
func inUse(key string) *apiError {
	return &apiError{http.StatusConflict, "idempotency_key_in_use",
		fmt.Sprintf("another request under idempotency key %q is being processed; nothing was done", key)}
}
