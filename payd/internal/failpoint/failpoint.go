//go:build chaos

// Package failpoint kills a process at named points of its work, on
// purpose, so crash recovery can be tested where it matters: after a claim
// was committed, after a provider request was sent, after its response
// arrived but before the outcome was recorded.
//
// A Set is parsed from a spec such as
// "after-claim=0.01,after-send=0.02" (each point's probability per hit) and
// is disabled when empty. It holds no global state: the process that wants
// failpoints builds a Set and passes its Hit down.
//
// The package is compiled only with the chaos build tag, so a production
// binary cannot arm a failpoint at all (TestProductionBuildHasNoFailpoints).
package failpoint

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Set is a set of armed points. The zero value and nil are disabled.
type Set struct {
	odds map[string]float64
	// Action runs when a point fires. Default: the process sends itself
	// SIGKILL, as a crash would, with no deferred cleanup.
	Action func(point string)

	mu  sync.Mutex
	rng *rand.Rand
}

// Parse reads a spec of comma-separated point=probability pairs, each
// point one of points, seeding its randomness with seed.
func Parse(spec string, seed uint64, points []string) (*Set, error) {
	s := &Set{odds: map[string]float64{}, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, odds, ok := strings.Cut(part, "=")
		p, err := strconv.ParseFloat(odds, 64)
		if !ok || err != nil || p < 0 || p > 1 {
			return nil, fmt.Errorf("failpoint: %q: want point=probability, with a probability in [0, 1]", part)
		}
		if !slices.Contains(points, name) {
			return nil, fmt.Errorf("failpoint: unknown point %q (known: %s)", name, strings.Join(points, ", "))
		}
		s.odds[name] = p
	}
	return s, nil
}

// Hit fires point with its probability. On a nil Set it does nothing.
func (s *Set) Hit(point string) {
	if s == nil {
		return
	}
	odds := s.odds[point]
	if odds == 0 {
		return
	}
	s.mu.Lock()
	fire := s.rng.Float64() < odds
	s.mu.Unlock()
	if !fire {
		return
	}
	if s.Action != nil {
		s.Action(point)
		return
	}
	Kill(point)
}

// Kill is the default Action: it says so on stderr and sends the process
// SIGKILL, as a crash would, with no deferred cleanup. It never returns.
func Kill(point string) {
	fmt.Fprintf(os.Stderr, "failpoint %s: killing process %d\n", point, os.Getpid())
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // SIGKILL is not delivered synchronously; never return
}
