package idem

import "sync"

// A flight is the one call of this process that claims a key; concurrent
// calls with the same fingerprint wait for it instead of claiming too.
type flight struct {
	key         string // the store key
	fingerprint string
	done        chan struct{} // made by the first waiter, under the shard's lock
	res         result
	err         error
	shared      bool // res and err are a recorded outcome waiters may take
}

// flights tracks this process's flights. Its shards are picked by bits of
// the key's SHA-256, which are already uniform: no hashing on the hot path,
// and calls on different keys rarely share a lock.
type flights struct {
	shards [flightShards]flightShard
}

const (
	flightShards    = 256
	maxSpareFlights = 4 // per shard
)

type flightShard struct {
	mu         sync.Mutex
	active     []*flight // rarely more than one
	spare      []*flight // landed flights nobody waited on, for reuse
	spareOwner string    // an unspent owner token (see call.owner)
}

// join makes c the leader of its key's flight, or returns the flight it
// should wait for. A flight with another fingerprint is left alone: c goes
// to the store, which arbitrates, and f is nil.
func (t *flights) join(c *call) (f *flight, leader bool) {
	sh := &t.shards[c.slot%flightShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for _, f := range sh.active {
		if f.key != c.key {
			continue
		}
		if f.fingerprint != c.opts.Fingerprint {
			return nil, true
		}
		if f.done == nil {
			f.done = make(chan struct{})
		}
		return f, false
	}
	if n := len(sh.spare); n > 0 {
		f, sh.spare = sh.spare[n-1], sh.spare[:n-1]
	} else {
		f = new(flight)
	}
	f.key, f.fingerprint = c.key, c.opts.Fingerprint
	sh.active = append(sh.active, f)
	if c.owner == "" {
		c.owner, sh.spareOwner = sh.spareOwner, ""
	}
	return f, true
}

// land ends f, led by c, and hands its outcome to its waiters. shared says
// whether the outcome is recorded; if not, waiters try again themselves.
func (t *flights) land(c *call, f *flight, res result, err error, shared bool) {
	if f == nil {
		return
	}
	sh := &t.shards[c.slot%flightShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if c.owner != "" {
		sh.spareOwner, c.owner = c.owner, ""
	}
	for i, a := range sh.active {
		if a == f {
			last := len(sh.active) - 1
			sh.active[i], sh.active[last] = sh.active[last], nil
			sh.active = sh.active[:last]
			break
		}
	}
	if f.done == nil {
		// Nobody waited, and nobody can find f any more: reuse it.
		if len(sh.spare) < maxSpareFlights {
			*f = flight{}
			sh.spare = append(sh.spare, f)
		}
		return
	}
	f.res, f.err, f.shared = res, err, shared
	close(f.done)
}
