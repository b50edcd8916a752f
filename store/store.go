package store

import (
	"context"
	"errors"
	"time"
)

// ErrLeaseLost is what Renew, Complete, Release and Commit return when the
// lease's fence is no longer current: another holder took the key over, or
// the record is gone. The engine returns it to the caller as
// idem.ErrLeaseLost, the same value.
var ErrLeaseLost = errors.New("idem: lease lost: outcome discarded, a newer holder decides the key")

// Store keeps one record per key and arbitrates who may run fn. Each method
// is one atomic step in one round trip (one Lua script, one SQL statement).
// Lease expiry is judged by the store's own clock, never the caller's.
//
// A record moves from absent to in progress {owner, fence, lease expiry,
// fingerprint} to completed {outcome, fingerprint}; a release returns it to
// absent. The fence survives release, takeover and completion, so fences
// for a key strictly increase for as long as the store holds any record of
// it. Keys are derived by the engine (namespace, "/", 64 hex digits); stores
// may use them verbatim.
//
// storetest.Run checks every rule here, each method's with the subtests
// its comment names; a Store is correct when it passes.
type Store interface {
	// Claim takes the key for p.Owner when it is absent (ClaimAbsentAcquires),
	// or in progress with an expired lease, a takeover
	// (TakeoverAfterLeaseExpiry), handing out a fence strictly greater than
	// any fence it issued for the key before (FencesStrictlyIncrease). Of
	// concurrent claims of one key exactly one acquires
	// (ConcurrentClaimsOneWinner); keys never affect each other
	// (KeysIndependent). A completed record is returned as is, as
	// ClaimCompleted (ClaimCompletedReplays); a live lease is reported as
	// ClaimInFlight with its remaining time (ClaimLiveLeaseInFlight); and a
	// record whose fingerprint differs from p.Fingerprint is reported as
	// ClaimMismatch, in flight, completed or expired, and with an empty
	// fingerprint on either side (MismatchWhileInFlight,
	// MismatchAfterCompleted, MismatchAfterLeaseExpiry,
	// MismatchEmptyFingerprint). A completed record past its retention
	// counts as absent (RetentionExpires). A claim whose ctx is done fails
	// with an error and takes nothing (CancelledClaimFailsClosed).
	Claim(ctx context.Context, p ClaimParams) (ClaimResult, error)

	// Renew extends l's lease by the lease TTL it was claimed with, and
	// keeps the record for as long as it is renewed, whatever the retention
	// (RenewKeepsLeasePastRetention). It returns ErrLeaseLost if l's fence
	// is no longer current or l's owner is not the holder
	// (StaleHolderRefused, WrongOwnerRefused).
	Renew(ctx context.Context, l Lease) error

	// Complete records outcome for l's key, kept for the retention it was
	// claimed with (ClaimCompletedReplays, RetentionExpires), and wakes
	// waiters (WaitWokenOnComplete). A holder whose lease expired may still
	// complete while nobody has taken over, since its fence is still current
	// (ExpiredHolderCompletesUntilTakenOver). It returns ErrLeaseLost,
	// recording nothing, if l's fence is no longer current, l's owner is not
	// the holder, or the key is already completed (StaleHolderRefused,
	// WrongOwnerRefused).
	Complete(ctx context.Context, l Lease, outcome []byte) error

	// Release returns l's key to absent, keeping its fence
	// (ReleaseFreesKey, FencesStrictlyIncrease), and wakes waiters
	// (WaitWokenOnRelease). It returns ErrLeaseLost if l's fence is no
	// longer current or l's owner is not the holder (StaleHolderRefused,
	// WrongOwnerRefused).
	Release(ctx context.Context, l Lease) error

	// Wait blocks until the record of key leaves the in-progress state with
	// the given fence (completed, released or taken over), or ctx is done
	// (WaitWokenOnComplete, WaitWokenOnRelease), and returns at once if that
	// already happened (WaitReturnsAtOnceWhenChanged). It must not miss a
	// change made after the Claim that reported the fence. It may return nil
	// for a change it cannot rule out, such as after its notification
	// channel dropped (storetest.RunNotificationLoss checks the recovery),
	// but not routinely. It returns ctx.Err() when ctx ends first
	// (WaitHonoursContext). Lease expiry needs no wake-up: the engine
	// bounds ctx by the holder's remaining lease.
	Wait(ctx context.Context, key string, fence int64) error
}

// ClaimParams are the arguments of Store.Claim.
type ClaimParams struct {
	Key         string
	Owner       string // unique per attempt
	Fingerprint string // "" when the caller has none; compared byte for byte
	LeaseTTL    time.Duration
	// Retention is how long the record is kept once completed or released,
	// and after its lease expires while in progress.
	Retention time.Duration
	// Sent is the caller's clock reading (time.Now, with its monotonic
	// part) taken just before the claim, from which the caller counts the
	// lease down. Stores that judge time by a server's clock ignore it. A
	// store whose clock is this process's monotonic clock, as memstore's
	// is, may take it as its own reading of now: it is that clock, read a
	// moment earlier, which only makes leases look younger. Zero means
	// unknown.
	Sent time.Time
}

// ClaimStatus says what Claim found.
type ClaimStatus uint8

const (
	// ClaimAcquired: the caller now holds the lease.
	ClaimAcquired ClaimStatus = iota + 1
	// ClaimCompleted: the key has a recorded outcome.
	ClaimCompleted
	// ClaimInFlight: another owner holds a live lease.
	ClaimInFlight
	// ClaimMismatch: the record has a different fingerprint.
	ClaimMismatch
)

func (s ClaimStatus) String() string {
	switch s {
	case ClaimAcquired:
		return "acquired"
	case ClaimCompleted:
		return "completed"
	case ClaimInFlight:
		return "in flight"
	case ClaimMismatch:
		return "mismatch"
	}
	return "invalid"
}

// ClaimResult is what Claim found.
type ClaimResult struct {
	Status ClaimStatus
	// Lease is the caller's new lease (ClaimAcquired), or the holder's
	// key and fence with no owner (ClaimInFlight), for Wait.
	Lease Lease
	// TookOver is set when ClaimAcquired replaced an expired lease.
	TookOver bool
	// Outcome is the recorded outcome (ClaimCompleted). The caller may keep
	// it; the store does not reuse its memory.
	Outcome []byte
	// RetryAfter is the holder's remaining lease by the store's clock
	// (ClaimInFlight).
	RetryAfter time.Duration
}

// Lease identifies one holder of one key. The fence is what makes it
// exclusive: only the holder of a key's current fence can renew, complete
// or release it.
type Lease struct {
	Key   string // the store key the engine derived, never the caller's key
	Owner string // unique per attempt
	Fence int64
}
