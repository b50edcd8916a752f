package idem

import "time"

// EventKind names what happened to a call.
type EventKind uint8

const (
	// EventExecuted: fn ran and its outcome (Err, if any) was recorded.
	EventExecuted EventKind = iota + 1
	// EventReplayed: a recorded outcome was returned without running fn.
	EventReplayed
	// EventWaited: the call waited for another holder (Duration).
	EventWaited
	// EventTakeover: the call claimed a key whose holder's lease had expired.
	EventTakeover
	// EventLeaseLost: the holder lost its lease; its outcome was discarded.
	EventLeaseLost
	// EventReleased: the claim was released unrecorded (Err says why: a
	// transient error, the caller giving up, or fn not returning).
	EventReleased
	// EventMismatch: the key was reused with a different fingerprint.
	EventMismatch
	// EventInFlight: the call gave up on a held key with ErrInFlight.
	EventInFlight
	// EventStoreError: a store operation failed (Err is a *StoreError, or
	// the store's error for renew and release).
	EventStoreError
)

var eventNames = [...]string{
	EventExecuted:   "executed",
	EventReplayed:   "replayed",
	EventWaited:     "waited",
	EventTakeover:   "takeover",
	EventLeaseLost:  "lease_lost",
	EventReleased:   "released",
	EventMismatch:   "mismatch",
	EventInFlight:   "in_flight",
	EventStoreError: "store_error",
}

// String returns the kind in snake case, ready for a metric label.
func (k EventKind) String() string {
	if int(k) < len(eventNames) && eventNames[k] != "" {
		return eventNames[k]
	}
	return "unknown"
}

// Event is what Config.Observer receives.
type Event struct {
	Kind EventKind
	// Key is the store key: namespace and hash, never the caller's raw key.
	Key string
	// Fence is the lease's fence where one is known, else 0.
	Fence int64
	// Duration is how long fn ran (executed, lease lost) or the call waited.
	Duration time.Duration
	Err      error
}
