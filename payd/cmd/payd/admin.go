package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/idemhq/idem/payd/internal/api"
	"github.com/idemhq/idem/payd/internal/payments"
)

// adminConfig is where the operator's endpoints (api.NewAdmin) listen,
// apart from the API, and the key they ask for.
type adminConfig struct {
	addr, key string
}

func (c *adminConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.addr, "admin-addr", "127.0.0.1:9090", "where the operator's endpoints (GET /metrics) listen, apart from the API, in every role; a loopback address unless --admin-key is set; empty: none")
	fs.StringVar(&c.key, "admin-key", "", "a key every admin request must send as Authorization: Bearer <key>; required with an --admin-addr that is not loopback; never printed; prefer PAYD_ADMIN_KEY, as a flag shows in the process list")
}

// check refuses admin endpoints that anyone on the network could read: an
// address that is not loopback without a key (TestAdminAddrNeedsAKey).
func (c *adminConfig) check() error {
	if c.addr == "" || c.key != "" {
		return nil
	}
	host, _, err := net.SplitHostPort(c.addr)
	if err != nil {
		return fmt.Errorf("--admin-addr %q: %w", c.addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("--admin-addr %s is not a loopback address: set --admin-key (or PAYD_ADMIN_KEY) too, or anyone who reaches it reads payd's metrics", c.addr)
	}
	return nil
}

// listen opens the admin address, or returns nil without one.
func (c *adminConfig) listen() (net.Listener, error) {
	if c.addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s (set --admin-addr, or empty it for no admin endpoints): %w", c.addr, err)
	}
	return ln, nil
}

// adminServer serves the admin endpoints on their listener, bounded like
// the API's server, until stop.
type adminServer struct {
	srv    *http.Server
	ln     net.Listener
	failed chan error // the error Serve returned, other than a stop
}

// startAdmin serves the admin endpoints of reg and store on ln; it returns nil if ln
// is nil.
func startAdmin(ln net.Listener, c adminConfig, hc httpConfig, reg *prometheus.Registry, store *payments.Store, log *slog.Logger) (*adminServer, error) {
	if ln == nil {
		return nil, nil
	}
	h, err := api.NewAdmin(api.AdminConfig{Registry: reg, Store: store, Key: c.key, Logger: log})
	if err != nil {
		return nil, err
	}
	a := &adminServer{srv: hc.server(h), ln: ln, failed: make(chan error, 1)}
	go func() {
		if err := a.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			a.failed <- fmt.Errorf("the admin server stopped: %w", err)
		}
	}()
	return a, nil
}

// failures is the channel a failed Serve reports on; nil without admin
// endpoints, so a select on it waits forever.
func (a *adminServer) failures() <-chan error {
	if a == nil {
		return nil
	}
	return a.failed
}

// stop stops the admin endpoints, letting a scrape in flight finish by
// ctx.
func (a *adminServer) stop(ctx context.Context) error {
	if a == nil {
		return nil
	}
	if err := a.srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("the admin server did not stop in time: %w", err)
	}
	return nil
}

// banner is the line that says where the admin endpoints are, printed
// before payd says it is ready; never the key.
func (a *adminServer) banner(c adminConfig) string {
	if a == nil {
		return ""
	}
	line := fmt.Sprintf("payd admin on http://%s (GET /metrics", a.ln.Addr())
	if c.key != "" {
		line += `, with -H "Authorization: Bearer $PAYD_ADMIN_KEY"`
	}
	return line + ")\n"
}
