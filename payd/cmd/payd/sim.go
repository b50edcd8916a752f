package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"

	"github.com/idemhq/idem/payd/internal/simulator"
)

// embeddedSim is the built-in provider simulator of an embedded payd.
type embeddedSim struct {
	url  string
	stop func()
}

// startSimulator serves a simulator on addr, in this process.
func startSimulator(ctx context.Context, addr string, cfg simulator.Config) (*embeddedSim, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s for the built-in provider simulator (set --sim-addr, or --provider-url for another provider): %w", addr, err)
	}
	if err := cfg.Validate(); err != nil {
		l.Close()
		return nil, err
	}
	sim := simulator.New(&cfg)
	serveCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := sim.Serve(serveCtx, l); err != nil && cfg.Logger != nil {
			cfg.Logger.Error("payd: the built-in provider simulator stopped", slog.Any("error", err))
		}
	}()
	return &embeddedSim{
		url: "http://" + l.Addr().String(),
		stop: func() {
			cancel()
			<-done
			sim.Close()
		},
	}, nil
}

func runProviderSim(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("payd provider-sim", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8081", "where the simulator listens")
	var cfg simulator.Config
	cfg.RegisterFlags(fs)
	if err := parse(fs, "Run the provider simulator as its own server: idempotent charges and refunds, faults on demand, signed webhooks.", args, getenv, stdout, stderr); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	cfg.Logger = newLogger("auto", stderr)
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen on %s (set --addr): %w", *addr, err)
	}
	sim := simulator.New(&cfg)
	defer sim.Close()
	fmt.Fprintf(stdout, "provider simulator on http://%s\n", l.Addr())
	return sim.Serve(ctx, l)
}
