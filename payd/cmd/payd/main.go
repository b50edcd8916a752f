// Command payd is a payment processor that never double-charges and never
// loses a charge. With no flags it runs everything in one process: the API
// on 127.0.0.1:8080, the workers, a SQLite file and a provider simulator.
// Run payd --help for the rest.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signalContext()
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "payd:", err)
		os.Exit(1)
	}
}

// signalContext is done on the first SIGINT or SIGTERM: payd stops taking
// work and lets what is in flight finish. A second signal exits at once,
// with status 2, for an operator who will not wait
// (TestSecondSignalExitsAtOnce).
func signalContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case <-signals:
		case <-ctx.Done():
			return
		}
		cancel()
		s := <-signals
		fmt.Fprintf(os.Stderr, "payd: %s again: exiting now, without waiting for work in flight\n", s)
		os.Exit(2)
	}()
	return ctx, func() {
		signal.Stop(signals)
		cancel()
	}
}
