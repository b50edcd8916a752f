package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"

	"github.com/idemhq/idem/payd/internal/simulator"
)

// embeddedSim is the built-in provider simulator of an embedded payd.
type embeddedSim struct {
	url  string
	stop func()
}

// startSimulator serves a simulator on addr, in this process, its state
// in cfg.StateFile.
func startSimulator(ctx context.Context, addr string, cfg simulator.Config) (*embeddedSim, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s for the built-in provider simulator (set --sim-addr, or --provider-url for another provider): %w", addr, err)
	}
	sim, err := simulator.Open(&cfg)
	if errors.Is(err, simulator.ErrStateFileInUse) {
		l.Close()
		return nil, fmt.Errorf("the built-in provider simulator's state file is held by another payd, most likely one on the same database: start this one with --provider-url set to that payd's simulator, so that both charge at one provider: %w", err)
	}
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("the built-in provider simulator (--sim-state names its state file): %w", err)
	}
	if cfg.Logger != nil {
		cfg.Logger.Info("payd: the built-in provider simulator keeps its charges, refunds and ids in its state file", slog.String("file", cfg.StateFile),
			slog.Int("charges", len(sim.Charges())), slog.Int("refunds", len(sim.Refunds())))
	}
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

// simStateFile is where the built-in simulator of a payd serve keeps its
// state: --sim-state, or else beside a SQLite database, in a file named
// after it, so that the two are kept, moved and deleted together; with
// PostgreSQL, in the working directory.
func simStateFile(c serveConfig) string {
	switch {
	case c.simState != "":
		return c.simState
	case strings.HasPrefix(c.databaseURL, "postgres://") || strings.HasPrefix(c.databaseURL, "postgresql://"):
		return "payd.provider"
	default:
		return c.databaseURL + ".provider"
	}
}

func runProviderSim(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("payd provider-sim", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8081", "where the simulator listens")
	var cfg simulator.Config
	cfg.RegisterFlags(fs)
	if err := parse(fs, "Run the provider simulator as its own server: idempotent charges and refunds, faults on demand, signed webhooks. Its state is in memory unless --state names a file that keeps it across restarts.", args, getenv, stdout, stderr); err != nil {
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
	sim, err := simulator.Open(&cfg)
	if err != nil {
		l.Close()
		return err
	}
	defer sim.Close()
	if cfg.StateFile != "" {
		cfg.Logger.Info("provider simulator: its charges, refunds and ids are kept in the state file", slog.String("file", cfg.StateFile),
			slog.Int("charges", len(sim.Charges())), slog.Int("refunds", len(sim.Refunds())))
	}
	fmt.Fprintf(stdout, "provider simulator on http://%s\n", l.Addr())
	return sim.Serve(ctx, l)
}
