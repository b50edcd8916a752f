//go:build chaos

package main

import (
	"flag"
	"math/rand/v2"
	"strings"

	"github.com/idemhq/idem/payd/internal/api"
	"github.com/idemhq/idem/payd/internal/failpoint"
	"github.com/idemhq/idem/payd/internal/payments"
)

// failpointAfterSend is the point between writing a provider request and
// reading its answer.
const failpointAfterSend = "after-send"

// failpoints lists every point payd can be killed at, in the order of a
// charge's life.
var failpoints = []string{
	api.FailpointInAccept, api.FailpointAfterAccept, payments.FailpointAfterClaim,
	failpointAfterSend, payments.FailpointAfterResponse,
}

// crashConfig arms failpoints in a build with the chaos tag, which the
// chaos harness and the tests use.
type crashConfig struct {
	spec string
	seed uint64
}

func (c *crashConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.spec, "failpoints", "", "crash testing only: kill the process at named points with a probability each, e.g. after-claim=0.01,after-send=0.01 (points: "+strings.Join(failpoints, ", ")+")")
	fs.Uint64Var(&c.seed, "seed", 0, "seed for --failpoints; 0 picks one at random")
}

func (c *crashConfig) arm() (crashHooks, error) {
	if c.spec == "" {
		return crashHooks{}, nil
	}
	seed := c.seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	set, err := failpoint.Parse(c.spec, seed, failpoints)
	if err != nil {
		return crashHooks{}, err
	}
	return crashHooks{hit: set.Hit, afterSend: func() { set.Hit(failpointAfterSend) }}, nil
}
