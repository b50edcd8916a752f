package chaos

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"time"
)

// stream returns the random source of one concern of a run (the schedule,
// one charge's client, one process's failpoints…). Each concern has its
// own, derived from the seed and the concern's name and numbers, so the
// draws of one never shift another's however the run's timing falls out.
func stream(seed uint64, concern string, ids ...int) *rand.Rand {
	return rand.New(rand.NewPCG(seed, mix(concern, ids...)))
}

// derive returns a seed for a process or component, from the run's seed.
func derive(seed uint64, concern string, ids ...int) uint64 {
	return stream(seed, concern, ids...).Uint64()
}

func mix(concern string, ids ...int) uint64 {
	h := fnv.New64a()
	h.Write([]byte(concern))
	for _, id := range ids {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], uint64(id))
		h.Write(b[:])
	}
	return h.Sum64()
}

// Event is one scheduled fault.
type Event struct {
	At      time.Duration `json:"at"`                // from the start of the run
	Kind    Kind          `json:"kind"`              // never a failpoint kill: payd draws those itself
	Replica int           `json:"replica,omitempty"` // the replica a process fault hits, from 0
	For     time.Duration `json:"for,omitempty"`     // how long a window or a pause lasts
	Rate    float64       `json:"rate,omitempty"`    // the probability per request of a provider fault
	Latency time.Duration `json:"latency,omitempty"` // a latency spike, or the webhook reorder window
}

func (e Event) String() string {
	s := fmt.Sprintf("%8s %-21s", e.At.Round(time.Millisecond), e.Kind)
	if info(e.Kind).process {
		s += fmt.Sprintf(" replica %d", e.Replica)
	}
	if e.For > 0 {
		s += fmt.Sprintf(" for %s", e.For.Round(time.Millisecond))
	}
	if e.Rate > 0 {
		s += fmt.Sprintf(" rate %.2f", e.Rate)
	}
	if e.Latency > 0 {
		s += fmt.Sprintf(" latency %s", e.Latency.Round(time.Millisecond))
	}
	return s
}

// Schedule is a run's timed faults, in order.
type Schedule struct {
	Seed   uint64
	Events []Event
}

// NewSchedule draws the schedule of a run with cfg (defaults filled in) on
// seed: faults of cfg.Faults but the failpoint kills, which payd draws per
// hit, at exponentially distributed gaps of mean cfg.FaultInterval until
// cfg.Duration. Each event takes the same number of draws whatever its
// kind, so the same seed and settings give the same schedule, and
// changing one kind's parameters never moves another's events.
func NewSchedule(seed uint64, cfg *Config) Schedule {
	c, _ := cfg.resolve() // a schedule of defaults even for an invalid config
	s := Schedule{Seed: seed}
	var kinds []Kind
	for _, k := range c.Faults {
		if info(k).failpoint == "" {
			kinds = append(kinds, k)
		}
	}
	if len(kinds) == 0 || c.FaultInterval <= 0 {
		return s
	}
	rng := stream(seed, "schedule")
	span := func(u float64, lo, hi time.Duration) time.Duration {
		return lo + time.Duration(u*float64(hi-lo))
	}
	for t := time.Duration(0); ; {
		t += time.Duration(rng.ExpFloat64() * float64(c.FaultInterval))
		var u [5]float64
		for i := range u {
			u[i] = rng.Float64()
		}
		if t >= c.Duration {
			return s
		}
		e := Event{At: t.Round(time.Millisecond), Kind: kinds[int(u[0]*float64(len(kinds)))]}
		switch e.Kind {
		case KillRandom:
			e.Replica = int(u[1] * float64(c.Replicas))
		case Pause:
			e.Replica = int(u[1] * float64(c.Replicas))
			e.For = span(u[2], c.Lease*6/5, c.Lease*11/5) // past the lease, so another worker takes over
		case Provider5xx, Provider429:
			e.For = span(u[2], time.Second, 4*time.Second)
			e.Rate = 0.5 + u[3]/2
		case ProviderDrop:
			e.For = span(u[2], time.Second, 4*time.Second)
			e.Rate = 0.2 + u[3]*0.4
		case ProviderHang:
			e.For = span(u[2], time.Second, 3*time.Second)
			e.Rate = 0.2 + u[3]*0.3
		case ProviderLate:
			e.For = span(u[2], 2*time.Second, 5*time.Second)
			e.Rate = 0.3 + u[3]*0.3
		case ProviderInFlight:
			e.For = span(u[2], time.Second, 4*time.Second)
			e.Rate = 1 // every request that finds its key in flight
		case ProviderOtherAmount:
			e.For = span(u[2], time.Second, 3*time.Second)
			e.Rate = 0.05 + u[3]*0.1 // rare: each one leaves a payment or refund held for an operator
		case ProviderReset, DBReset:
			e.For = span(u[2], 100*time.Millisecond, 800*time.Millisecond)
		case ProviderLatency:
			e.For = span(u[2], time.Second, 3*time.Second)
			e.Latency = span(u[3], c.ProviderTimeout/2, 2*c.ProviderTimeout)
		case DBLatency:
			e.For = span(u[2], time.Second, 3*time.Second)
			e.Latency = span(u[3], 50*time.Millisecond, 500*time.Millisecond)
		case WebhookDuplicate:
			e.For = span(u[2], 2*time.Second, 6*time.Second)
			e.Rate = 0.3 + u[3]*0.7
		case WebhookReorder:
			e.For = span(u[2], 2*time.Second, 6*time.Second)
			e.Latency = span(u[3], 200*time.Millisecond, time.Second)
		}
		e.For = e.For.Round(time.Millisecond)
		e.Latency = e.Latency.Round(time.Millisecond)
		s.Events = append(s.Events, e)
	}
}

// Digest is a short hash of the schedule: two runs with the same digest
// injected the same faults at the same offsets.
func (s Schedule) Digest() string {
	h := sha256.New()
	fmt.Fprintf(h, "%d\n", s.Seed)
	for _, e := range s.Events {
		fmt.Fprintf(h, "%d %s %d %d %g %d\n", e.At, e.Kind, e.Replica, e.For, e.Rate, e.Latency)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// Count returns how many events of each kind the schedule holds.
func (s Schedule) Count() map[Kind]int {
	out := map[Kind]int{}
	for _, e := range s.Events {
		out[e.Kind]++
	}
	return out
}

// between draws a duration uniformly from [lo, hi).
func between(r *rand.Rand, lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(r.Float64()*float64(hi-lo))
}
