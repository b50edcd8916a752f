//go:build chaos

package main

import (
	"errors"
	"flag"
	"math/rand/v2"
	"net"
	"strings"
	"sync/atomic"

	"github.com/idemhq/idem/payd/internal/api"
	"github.com/idemhq/idem/payd/internal/failpoint"
	"github.com/idemhq/idem/payd/internal/payments"
)

// failpointAfterSend is the point between writing a provider request and
// reading its answer.
const failpointAfterSend = "after-send"

// failpointAcceptError is hit each time the API listener accepts a
// connection. It kills nothing: when it fires, the connection is closed
// and Accept returns a permanent error, so the API server's Serve fails,
// as it would on a listener the system took away (TestServeErrorExits).
const failpointAcceptError = "accept-error"

// failpoints lists every point payd can be killed at, in the order of a
// charge's life, then accept-error.
var failpoints = []string{
	api.FailpointInAccept, api.FailpointAfterAccept, payments.FailpointAfterClaim,
	failpointAfterSend, payments.FailpointAfterResponse, failpointAcceptError,
}

// crashConfig arms failpoints in a build with the chaos tag, which the
// chaos harness and the tests use.
type crashConfig struct {
	spec string
	seed uint64
}

func (c *crashConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.spec, "failpoints", "", "crash testing only: kill the process at named points with a probability each, e.g. after-claim=0.01,after-send=0.01 (points: "+
		strings.Join(failpoints, ", ")+"; "+failpointAcceptError+" kills nothing: it makes the API listener's Accept fail for good)")
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
	broken := &atomic.Bool{}
	set.Action = func(point string) {
		if point == failpointAcceptError {
			broken.Store(true)
			return
		}
		failpoint.Kill(point)
	}
	return crashHooks{
		hit:       set.Hit,
		afterSend: func() { set.Hit(failpointAfterSend) },
		listener: func(ln net.Listener) net.Listener {
			return &failingListener{Listener: ln, hit: set.Hit, broken: broken}
		},
	}, nil
}

// failingListener is a listener whose Accept fails for good once
// failpointAcceptError fires.
type failingListener struct {
	net.Listener
	hit    func(point string)
	broken *atomic.Bool
}

var errAcceptFailpoint = errors.New("failpoint " + failpointAcceptError + ": the listener accepts no more connections")

func (l *failingListener) Accept() (net.Conn, error) {
	if l.broken.Load() {
		return nil, errAcceptFailpoint
	}
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if l.hit(failpointAcceptError); l.broken.Load() {
		c.Close()
		return nil, errAcceptFailpoint
	}
	return c, nil
}
