package simulator

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"
)

// shutdownGrace is how long Serve lets requests in flight finish once its
// context is done, before it closes their connections.
const shutdownGrace = 5 * time.Second

// ListenAndServe serves the simulator's API on addr (host:port) until ctx
// is done; see Serve.
func (s *Sim) ListenAndServe(ctx context.Context, addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return s.Serve(ctx, l)
}

// Serve serves the simulator's API on l until ctx is done, then shuts the
// server down: requests in flight get a few seconds to finish, after which
// their connections are closed. It closes l, but not the simulator. It
// returns nil after a shutdown, or the error that stopped the server.
func (s *Sim) Serve(ctx context.Context, l net.Listener) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		// Longer than clients keep idle connections (90s in
		// http.DefaultTransport), so that clients, not the server, close
		// them: a server closing an idle connection as a client reuses it
		// turns a request into an unknown outcome.
		IdleTimeout: 2 * time.Minute,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
