// Package memstore is an in-process store.Store: the embedded default for a
// single process, and the store tests use instead of a mock. It passes the
// same conformance suite (storetest) as the durable stores.
//
// Where it belongs: one process whose callers all reach it, and whose
// duplicates matter only while it runs: tests, a CLI, a worker that
// de-duplicates its own retries. Records live in memory and die with the
// process, so a retry that reaches a restarted process, or another
// replica, runs fn again; for exactly-once across restarts and replicas,
// use a durable store (pgstore, sqlitestore, redisstore). Behind a public
// endpoint, where anyone can make new keys, its Limits refuse new keys
// once it holds its share of memory (ErrFull), rather than grow.
//
// Lease expiry and retention are judged by this process's monotonic
// clock, which is the store's clock here (a claim takes the engine's
// reading of it from ClaimParams.Sent); under testing/synctest that clock
// is the bubble's.
package memstore

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/store"
)

// Store is an in-process store.Store. The zero value is not usable; call New.
type Store struct {
	limits Limits

	mu        sync.Mutex
	records   map[string]*record
	bytes     int64         // the size of every record, as size counts it
	inserts   int           // records added since the last sweep
	fullSweep time.Duration // when a claim refused for a full store last looked at every record
	born      time.Time     // the store's epoch; see now
}

// Limits bound what a Store holds, so that callers who make new keys
// cannot make it take the process's memory. A claim of a new key beyond
// them is refused with ErrFull; keys already held still claim, complete
// and replay (TestLimits).
type Limits struct {
	// MaxRecords caps the keys held, in flight, completed or released
	// and not yet expired. Default 100,000; -1 for no cap.
	MaxRecords int
	// MaxBytes caps the bytes held: keys, fingerprints, outcomes and
	// about 160 bytes a record. An outcome is kept even if it takes the
	// store past the cap, since fn has run; new keys are refused until
	// records expire. Default 64 MiB; -1 for no cap.
	MaxBytes int64
}

// Defaults for Limits.
const (
	DefaultMaxRecords = 100_000
	DefaultMaxBytes   = 64 << 20
)

// ErrFull is the error of a claim of a new key while the store holds
// Limits' worth of records. The engine reports it as a *idem.StoreError,
// and idemhttp answers 503 with Retry-After: nothing ran, and a retry may
// find room once records expire.
var ErrFull = errors.New("memstore: full: the records held reach its Limits; the key was not claimed")

// recordOverhead is what a record costs beyond its strings: the struct,
// its map entry and the key's header, roughly.
const recordOverhead = 160

type state uint8

const (
	free state = iota // released, or never completed: only the fence remains
	inProgress
	completed
)

type record struct {
	state       state
	fence       int64
	owner       string
	fingerprint string
	leaseTTL    time.Duration
	retention   time.Duration
	leaseUntil  time.Duration // store clock, see now
	expiresAt   time.Duration
	outcome     []byte
	changed     chan struct{} // closed when the in-progress fence ends; made by the first waiter
}

// New returns an empty Store with the default Limits.
func New() *Store { return NewWithLimits(Limits{}) }

// NewWithLimits returns an empty Store that holds at most l; zero fields
// mean the defaults.
func NewWithLimits(l Limits) *Store {
	if l.MaxRecords == 0 {
		l.MaxRecords = DefaultMaxRecords
	}
	if l.MaxBytes == 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	return &Store{limits: l, records: make(map[string]*record), born: time.Now()}
}

// Close returns nil: a memstore holds no connection or goroutine, and its
// records go with it. It is here so that every store closes the same way.
func (s *Store) Close() error { return nil }

// now is the store's clock: monotonic time since New. It reads only the
// monotonic clock, at about half the cost of time.Now, which matters on the
// replay path; records compare instants and never show them.
func (s *Store) now() time.Duration { return time.Since(s.born) }

// claimedAt is the store's clock for claim p: the engine's own reading of
// this process's monotonic clock as it sent p, when p carries one, or a
// fresh reading. Reusing the engine's saves a clock read per replay; the
// reading is at most a moment old, which makes leases and records look
// younger, never older, than they are.
func (s *Store) claimedAt(p store.ClaimParams) time.Duration {
	if p.Sent.IsZero() {
		return s.now()
	}
	return p.Sent.Sub(s.born)
}

var _ store.Store = (*Store)(nil)

// Claim implements store.Store.
func (s *Store) Claim(ctx context.Context, p store.ClaimParams) (store.ClaimResult, error) {
	if err := ctx.Err(); err != nil {
		return store.ClaimResult{}, err
	}
	now := s.claimedAt(p)
	s.mu.Lock()
	defer s.mu.Unlock()

	r := s.records[p.Key]
	var before int64 // r's size before the claim, against Limits.MaxBytes
	if r == nil {
		s.sweep(now) // before the insert: a new record counts as expired
		if s.full(now) {
			return store.ClaimResult{}, ErrFull
		}
		r = &record{}
		s.records[p.Key] = r
	} else {
		before = r.size(p.Key)
		if r.expired(now) {
			r.state = free
		}
	}
	defer func() { s.bytes += r.size(p.Key) - before }()
	tookOver := false
	switch r.state {
	case completed:
		if r.fingerprint != p.Fingerprint {
			return store.ClaimResult{Status: store.ClaimMismatch}, nil
		}
		return store.ClaimResult{Status: store.ClaimCompleted, Outcome: clone(r.outcome)}, nil
	case inProgress:
		if r.fingerprint != p.Fingerprint {
			return store.ClaimResult{Status: store.ClaimMismatch}, nil
		}
		if now < r.leaseUntil {
			return store.ClaimResult{
				Status:     store.ClaimInFlight,
				Lease:      store.Lease{Key: p.Key, Fence: r.fence},
				RetryAfter: r.leaseUntil - now,
			}, nil
		}
		tookOver = true
		r.wake()
	}
	r.state = inProgress
	r.fence++
	r.owner = p.Owner
	r.fingerprint = p.Fingerprint
	r.leaseTTL = p.LeaseTTL
	r.retention = p.Retention
	r.outcome = nil
	r.extendLease(now)
	return store.ClaimResult{
		Status:   store.ClaimAcquired,
		Lease:    store.Lease{Key: p.Key, Owner: p.Owner, Fence: r.fence},
		TookOver: tookOver,
	}, nil
}

// Renew implements store.Store.
func (s *Store) Renew(ctx context.Context, l store.Lease) error {
	return s.update(ctx, l, func(r *record, now time.Duration) {
		r.extendLease(now)
	})
}

// Complete implements store.Store.
func (s *Store) Complete(ctx context.Context, l store.Lease, outcome []byte) error {
	return s.update(ctx, l, func(r *record, now time.Duration) {
		r.state = completed
		r.outcome = clone(outcome)
		r.expiresAt = now + r.retention
		r.wake()
	})
}

// Release implements store.Store.
func (s *Store) Release(ctx context.Context, l store.Lease) error {
	return s.update(ctx, l, func(r *record, now time.Duration) {
		r.state = free
		r.owner, r.fingerprint, r.outcome = "", "", nil
		r.expiresAt = now + r.retention
		r.wake()
	})
}

// update applies f to l's record if l holds its current fence.
func (s *Store) update(ctx context.Context, l store.Lease, f func(*record, time.Duration)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.records[l.Key]
	if r == nil || r.state != inProgress || r.fence != l.Fence || r.owner != l.Owner {
		return idem.ErrLeaseLost
	}
	before := r.size(l.Key)
	f(r, s.now())
	s.bytes += r.size(l.Key) - before
	return nil
}

// Wait implements store.Store.
func (s *Store) Wait(ctx context.Context, key string, fence int64) error {
	s.mu.Lock()
	r := s.records[key]
	if r == nil || r.state != inProgress || r.fence != fence {
		s.mu.Unlock()
		return nil
	}
	if r.changed == nil {
		r.changed = make(chan struct{})
	}
	changed := r.changed
	s.mu.Unlock()
	select {
	case <-changed:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *record) extendLease(now time.Duration) {
	r.leaseUntil = now + r.leaseTTL
	r.expiresAt = r.leaseUntil + r.retention
}

// expired reports whether the record is past retention. An in-progress
// record expires only after its lease, so no TTL drops a live holder.
func (r *record) expired(now time.Duration) bool {
	return now >= r.expiresAt && !(r.state == inProgress && now < r.leaseUntil)
}

// wake ends the current in-progress fence for waiters.
func (r *record) wake() {
	if r.changed != nil {
		close(r.changed)
		r.changed = nil
	}
}

// Sweep tuning: every sweepEvery new records, look at up to sweepScan
// records (map iteration starts at a random place) and delete the expired
// ones. Like Redis's active expiry, this bounds memory without a goroutine:
// looking at four records per record added keeps the expired ones to about
// a quarter of the map (TestSweepBoundsMemory), and replays, which add
// nothing, never pay for it.
const (
	sweepEvery = 16
	sweepScan  = 4 * sweepEvery
)

func (s *Store) sweep(now time.Duration) {
	if s.inserts++; s.inserts < sweepEvery {
		return
	}
	s.inserts = 0
	n := 0
	for k, r := range s.records {
		if n++; n > sweepScan {
			return
		}
		if r.expired(now) && r.changed == nil {
			s.delete(k, r)
		}
	}
}

func (s *Store) delete(key string, r *record) {
	delete(s.records, key)
	s.bytes -= r.size(key)
}

// fullSweepEvery spaces the sweeps of every record that a full store
// makes before it refuses a claim: a store full of live records refuses
// claims in constant time between them.
const fullSweepEvery = 100 * time.Millisecond

// full reports whether a new record would take the store past its
// Limits, once the expired records are gone.
func (s *Store) full(now time.Duration) bool {
	over := func() bool {
		return s.limits.MaxRecords >= 0 && len(s.records) >= s.limits.MaxRecords ||
			s.limits.MaxBytes >= 0 && s.bytes >= s.limits.MaxBytes
	}
	if !over() || s.fullSweep != 0 && now-s.fullSweep < fullSweepEvery {
		return over()
	}
	s.fullSweep = now
	for k, r := range s.records {
		if r.expired(now) && r.changed == nil {
			s.delete(k, r)
		}
	}
	return over()
}

// size is what the record of key counts against Limits.MaxBytes.
func (r *record) size(key string) int64 {
	return int64(len(key)+len(r.owner)+len(r.fingerprint)+len(r.outcome)) + recordOverhead
}

// clone copies b, which callers and the store must not share.
func clone(b []byte) []byte {
	c := make([]byte, len(b))
	copy(c, b)
	return c
}
