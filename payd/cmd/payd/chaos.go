//go:build chaos

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/idemhq/idem/payd/internal/chaos"
)

const chaosSummary = `Prove payd: run it as real processes (1 to 3 replicas, SQLite or PostgreSQL)
with the provider simulator, drive it with clients that time out, retry with
the same key and double-click, while killing replicas at payd's failpoints and
at random, pausing them past their lease, and breaking the provider and the
database, and with a provider that executes requests late after "not found",
answers 409 for keys in flight and charges other amounts than asked. Then
drain, and check: no double charge, no lost charge, every 2xx matches the
final state, no payment stuck, refunds map one to one, balances match the
provider, every hold and open mismatch is explained by a fault, payd verify
passes.

The same --seed gives the same faults. The naive processor (--target naive
or both) runs the same workload the way a first payment API does, as the
contrast. Exits 1 on any violation by payd, printing the seed to reproduce it.

Faults (--faults): ` + "\n"

func chaosUsage() string {
	var b strings.Builder
	b.WriteString(chaosSummary)
	for _, k := range chaos.Kinds() {
		fmt.Fprintf(&b, "  %-22s %s\n", k, chaos.Describe(k))
	}
	b.WriteString("\nExample: payd chaos --duration 2m --replicas 3 --database-url postgres://localhost/postgres --json report.json")
	return b.String()
}

func runChaos(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var (
		cfg                 chaos.Config
		jsonPath, faults    string
		keep                bool
		clientMin, clientMx time.Duration
	)
	fs := flag.NewFlagSet("payd chaos", flag.ContinueOnError)
	fs.DurationVar(&cfg.Duration, "duration", time.Minute, "how long to inject faults and send new charges, before the drain")
	fs.Uint64Var(&cfg.Seed, "seed", 0, "seed of every fault and client choice; the same seed gives the same schedule (0: a random one, printed)")
	fs.IntVar(&cfg.Replicas, "replicas", 3, "payd processes, 1 to 3")
	fs.StringVar(&cfg.DatabaseURL, "database-url", "", "a postgres:// URL: the run creates a database of its own on that server (empty: SQLite)")
	fs.BoolVar(&cfg.ExistingDatabase, "existing-database", false, "run in the database --database-url names, which must hold no payments, instead of creating one")
	fs.StringVar(&jsonPath, "json", "", "also write the report as JSON to this file")
	fs.StringVar(&cfg.Target, "target", chaos.TargetBoth, "payd, naive (the unsafe baseline, in the harness) or both, side by side")
	fs.Float64Var(&cfg.Rate, "rate", 20, "new charges per second")
	fs.IntVar(&cfg.Concurrency, "concurrency", 300, "charges in flight at most, per target, from first request to final status")
	fs.DurationVar(&clientMin, "client-timeout-min", 150*time.Millisecond, "shortest client request timeout")
	fs.DurationVar(&clientMx, "client-timeout-max", 600*time.Millisecond, "longest client request timeout")
	fs.StringVar(&faults, "faults", "all", "faults to inject: all, none, failpoints, provider, db, webhook or kinds, comma-separated; -kind removes one (all,-pause)")
	fs.Float64Var(&cfg.FailpointRate, "failpoint-rate", 0.01, "probability that a payd process dies at each hit of a failpoint")
	fs.DurationVar(&cfg.FaultInterval, "fault-interval", time.Second, "mean time between timed faults")
	fs.DurationVar(&cfg.Lease, "lease", 3*time.Second, "payd's --lease; pauses last longer")
	fs.DurationVar(&cfg.ProviderTimeout, "provider-timeout", time.Second, "payd's --provider-timeout")
	fs.IntVar(&cfg.Workers, "workers", 4, "payd's --workers")
	fs.DurationVar(&cfg.ProviderMaxDelay, "provider-max-delay", chaos.DefaultProviderMaxDelay, "payd's --provider-max-delay, the longest the provider may take to act on a request; provider-late executes requests 500ms to min(8s, half of it) late, and it must be shorter than --drain-timeout")
	fs.StringVar(&cfg.Refunds, "refunds", chaos.ModeAuto, "refund some charges: auto (if payd has refunds), on or off")
	fs.StringVar(&cfg.Webhooks, "webhooks", chaos.ModeAuto, "have the provider send webhooks: auto (if payd serve has --webhook-secret), on or off")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", 3*time.Minute, "how long the drain may take")
	fs.StringVar(&cfg.WorkDir, "work-dir", "", "where the processes' logs, the schedule and the SQLite file go (default: a temporary directory, removed after a passing run)")
	fs.BoolVar(&keep, "keep", false, "keep the work directory and the run's database after a passing run")
	if err := parse(fs, chaosUsage(), args, getenv, stdout, stderr); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	kinds, err := chaos.ParseFaults(faults)
	if err != nil {
		return fmt.Errorf("--faults: %w", err)
	}
	cfg.Faults, cfg.NoFaults = kinds, len(kinds) == 0
	cfg.ClientTimeoutMin, cfg.ClientTimeoutMax = clientMin, clientMx
	cfg.KeepWorkDir = keep
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("chaos runs payd from its own executable, which cannot be found: %w", err)
	}
	cfg.Command = []string{exe}
	cfg.Progress, cfg.ProgressTTY = stderr, isTerminal(stderr)
	if cfg.Seed == 0 {
		cfg.Seed = newSeed()
	}
	rep, err := chaos.Run(ctx, &cfg)
	if err != nil {
		return fmt.Errorf("%w (seed %d)", err, cfg.Seed)
	}
	rep.Reproduce = reproduce(fs, cfg.Seed)
	if err := rep.WriteText(stdout); err != nil {
		return err
	}
	if jsonPath != "" {
		f, err := os.Create(jsonPath)
		if err != nil {
			return fmt.Errorf("--json: %w", err)
		}
		if err := rep.WriteJSON(f); err != nil {
			f.Close()
			return fmt.Errorf("--json: %w", err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("--json: %w", err)
		}
	}
	if !rep.Passed {
		return fmt.Errorf("chaos found %d violation(s) with seed %d; reproduce with: %s", len(rep.Violations), rep.Seed, rep.Reproduce)
	}
	return nil
}

// newSeed picks a seed that is easy to read back and type.
func newSeed() uint64 {
	return uint64(time.Now().UnixNano())%1_000_000_000 + 1
}

// reproduce is the command line that runs the same schedule: the flags
// given, with the seed fixed.
func reproduce(fs *flag.FlagSet, seed uint64) string {
	parts := []string{"payd chaos", "--seed " + strconv.FormatUint(seed, 10)}
	fs.VisitAll(func(f *flag.Flag) {
		switch f.Name {
		case "seed", "json", "work-dir", "keep":
			return
		}
		if f.Value.String() != f.DefValue {
			v := f.Value.String()
			if u, err := url.Parse(v); f.Name == "database-url" && err == nil {
				v = u.Redacted()
			}
			if strings.ContainsAny(v, " '\"&?") {
				v = "'" + v + "'"
			}
			parts = append(parts, "--"+f.Name+" "+v)
		}
	})
	return strings.Join(parts, " ")
}
