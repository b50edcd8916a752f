package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/idemhq/idem/payd/internal/api"
)

// httpConfig bounds what one connection to the API may hold: a client
// that sends slowly, or keeps a connection idle, is cut off.
type httpConfig struct {
	readTimeout, writeTimeout, idleTimeout, drainDelay time.Duration
}

// maxHeaderBytes caps a request's headers for Go's server, which answers
// a plain-text 431 past it (and a few KiB of slack) before payd sees the
// request. It stays above api.MaxHeaderBytes, past which payd answers
// 431 problem+json itself (TestHeaderLimitOverTheWire).
const maxHeaderBytes = 2 * api.MaxHeaderBytes

func (c *httpConfig) flags(fs *flag.FlagSet) {
	fs.DurationVar(&c.readTimeout, "read-timeout", 15*time.Second, "how long a client may take to send a whole request, headers and body")
	fs.DurationVar(&c.writeTimeout, "write-timeout", api.DefaultMaxPreferWait+15*time.Second, "how long payd may take to answer a request, from its headers on; longer than the longest Prefer: wait")
	fs.DurationVar(&c.idleTimeout, "idle-timeout", 60*time.Second, "how long a kept-alive connection may stay idle")
	fs.DurationVar(&c.drainDelay, "drain-delay", 0, "on SIGTERM, how long /readyz answers 503 while the API still serves, before it stops taking connections: set it to the load balancer's health-check interval")
}

func (c *httpConfig) check() error {
	if c.readTimeout <= 0 || c.idleTimeout <= 0 || c.drainDelay < 0 {
		return errors.New("--read-timeout and --idle-timeout must be positive, and --drain-delay not negative")
	}
	if c.writeTimeout <= api.DefaultMaxPreferWait {
		return fmt.Errorf("--write-timeout (%s) must outlast the longest Prefer: wait (%s), or a waiting client is cut off before its answer", c.writeTimeout, api.DefaultMaxPreferWait)
	}
	return nil
}

// frontend is the API's HTTP server and what its stop needs: whether it
// is draining, for /readyz, and how it failed, if it did.
type frontend struct {
	srv      *http.Server
	draining atomic.Bool
	failed   chan error // the error Serve returned, other than a stop
}

// newFrontend returns the server for the API handler that build makes,
// given the frontend's readiness, not yet serving.
func newFrontend(cfg httpConfig, build func(draining func() bool) (http.Handler, error)) (*frontend, error) {
	f := &frontend{failed: make(chan error, 1)}
	handler, err := build(f.draining.Load)
	if err != nil {
		return nil, err
	}
	f.srv = cfg.server(handler)
	return f, nil
}

// server is an HTTP server of handler bounded as c says: the API's, and
// the admin endpoints'.
func (c httpConfig) server(handler http.Handler) *http.Server {
	return &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: min(10*time.Second, c.readTimeout),
		ReadTimeout:       c.readTimeout,
		WriteTimeout:      c.writeTimeout,
		IdleTimeout:       c.idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
	}
}

// serve serves ln until stop; an error that ends it sooner goes to failed.
func (f *frontend) serve(ln net.Listener) {
	go func() {
		if err := f.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			f.failed <- fmt.Errorf("the API server stopped: %w", err)
		}
	}()
}

// failures is the channel a failed Serve reports on; nil without an API,
// so a select on it waits forever.
func (f *frontend) failures() <-chan error {
	if f == nil {
		return nil
	}
	return f.failed
}

// stop fails readiness first, waits drainDelay for load balancers to see
// it, then stops taking connections and lets requests in flight finish
// by ctx.
func (f *frontend) stop(ctx context.Context, drainDelay time.Duration, log *slog.Logger) error {
	if f == nil {
		return nil
	}
	f.draining.Store(true)
	if drainDelay > 0 {
		log.Info("payd: draining: /readyz answers 503 before the API stops", slog.String("for", drainDelay.String()))
		time.Sleep(drainDelay)
	}
	if err := f.srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("the API server did not stop in time: %w", err)
	}
	return nil
}
