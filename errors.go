package idem

import (
	"errors"
	"fmt"

	"github.com/idemhq/idem/store"
)

var (
	// ErrInFlight is returned when another call holds a live lease on the key
	// and this call either fails fast (RunOptions.FailFast) or has waited
	// MaxWait without seeing an outcome. fn did not run; retrying later is safe.
	ErrInFlight = errors.New("idem: key in flight: another call holds its lease")

	// ErrMismatch is returned when the key was first used with a different
	// fingerprint. fn did not run, and the other request's outcome is not
	// returned.
	ErrMismatch = errors.New("idem: key reused with a different fingerprint")

	// ErrLeaseLost is returned when a holder could not keep its lease: a
	// renewal was refused, or none was confirmed before the local deadline.
	// fn's context was cancelled, fn may have run in part or in full, and its
	// outcome was not recorded; the holder that took over decides the
	// outcome. It is store.ErrLeaseLost, which stores return when a lease's
	// fence is no longer current.
	ErrLeaseLost = store.ErrLeaseLost

	// ErrInvalidKey is returned, before any store access, for a key that is
	// empty, longer than 255 bytes (Stripe's limit), not UTF-8, or holds
	// control characters; and for a fingerprint longer than 255 bytes (pass
	// a digest of the request, not the request).
	ErrInvalidKey = errors.New("idem: invalid key")

	// ErrNotRecorded matches (errors.Is) every error returned after fn ran to
	// completion whose outcome could not be recorded: the effect happened and
	// the record is missing, so a later call may run fn again. It is the
	// error to alert on.
	ErrNotRecorded = errors.New("idem: fn ran but its outcome was not recorded")
)

// StoreError reports a failed store operation. Executed tells whether fn
// ran: false means fn did not run (fail closed, safe to retry); true means
// fn ran and its outcome is not recorded, and the error matches
// ErrNotRecorded.
type StoreError struct {
	Op       string // "claim", "wait", "complete", "release" or "commit" (RunTx)
	Key      string // the store key: namespace and hash, never the raw key
	Executed bool
	Err      error
}

func (e *StoreError) Error() string {
	if e.Executed && e.Op == "commit" {
		return fmt.Sprintf("idem: fn ran but its transaction, writes and outcome together, did not commit or was not confirmed: %s: %v", e.Key, e.Err)
	}
	if e.Executed {
		return fmt.Sprintf("idem: fn ran but its outcome was not recorded: store %s %s: %v", e.Op, e.Key, e.Err)
	}
	return fmt.Sprintf("idem: store %s %s failed, fn did not run: %v", e.Op, e.Key, e.Err)
}

func (e *StoreError) Unwrap() error { return e.Err }

// Is reports whether target is ErrNotRecorded and fn ran.
func (e *StoreError) Is(target error) bool { return target == ErrNotRecorded && e.Executed }

// ReplayedError is the error a replay returns in place of the error fn
// returned when it ran. It keeps the message and code; if the code is
// registered in Config.Errors it unwraps to the registered value, so
// errors.Is and errors.As match as they did for the original.
type ReplayedError struct {
	// Code is the registered code of the original error (Config.Errors),
	// or the code it reported as an ErrorCoder, or "" if neither.
	Code    string
	Message string

	registered error
}

func (e *ReplayedError) Error() string { return e.Message }

func (e *ReplayedError) Unwrap() error { return e.registered }
