// Package observe holds what an engine tells an observer about each call:
// the Event that idem.Config.Observer receives, with the caller's context.
// The OpenTelemetry and Prometheus adapters are built on it; so can any
// other.
package observe

import (
	"context"
	"time"
)

// Kind names what happened to a call.
type Kind uint8

const (
	// Executed: fn ran and its outcome (Err, if any) was recorded.
	Executed Kind = iota + 1
	// Replayed: a recorded outcome was returned without running fn.
	Replayed
	// Waited: the call waited for another holder (Duration).
	Waited
	// Takeover: the call claimed a key whose holder's lease had expired.
	Takeover
	// LeaseLost: the holder lost its lease; its outcome was discarded.
	LeaseLost
	// Released: the claim was released unrecorded (Err says why: a
	// transient error, the caller giving up, or fn not returning).
	Released
	// Mismatch: the key was reused with a different fingerprint.
	Mismatch
	// InFlight: the call gave up on a held key with idem.ErrInFlight.
	InFlight
	// StoreError: a store operation failed before fn ran, or a renewal or
	// release failed (Err is the *idem.StoreError or the store's error).
	StoreError
	// NotRecorded: fn ran to completion and its outcome could not be
	// recorded (Err matches idem.ErrNotRecorded). The effect happened and
	// the record is missing: the event to alert on.
	NotRecorded
)

var names = [...]string{
	Executed:    "executed",
	Replayed:    "replayed",
	Waited:      "waited",
	Takeover:    "takeover",
	LeaseLost:   "lease_lost",
	Released:    "released",
	Mismatch:    "mismatch",
	InFlight:    "in_flight",
	StoreError:  "store_error",
	NotRecorded: "not_recorded",
}

// String returns the kind in snake case, ready for a metric label or a
// span attribute.
func (k Kind) String() string {
	if int(k) < len(names) && names[k] != "" {
		return names[k]
	}
	return "unknown"
}

// Event is one thing that happened to a call.
type Event struct {
	Kind Kind
	// Key is the store key: namespace and hash, never the caller's raw key.
	Key string
	// Fence is the lease's fence where one is known, else 0.
	Fence int64
	// Duration is how long fn ran (executed, lease lost, not recorded) or
	// the call waited.
	Duration time.Duration
	Err      error
}

// All returns an observer that passes each event to every one of
// observers, in order, such as the OpenTelemetry and the Prometheus
// adapters together (TestAllCallsEveryObserver). Nil observers are
// skipped.
func All(observers ...func(context.Context, Event)) func(context.Context, Event) {
	var live []func(context.Context, Event)
	for _, o := range observers {
		if o != nil {
			live = append(live, o)
		}
	}
	return func(ctx context.Context, ev Event) {
		for _, o := range live {
			o(ctx, ev)
		}
	}
}
