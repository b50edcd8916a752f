//go:build chaos

package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/idemhq/idem/payd/internal/chaos"
	"github.com/idemhq/idem/payd/internal/pgtest"
)

// chaosConfig is a short chaos run whose processes are this test binary
// running as payd (see TestMain). Seed 1's schedule holds every timed
// fault, kills and pauses at least twice each, in its first 15 seconds at
// this interval (TestChaosSchedule checks it). PAYD_ADMIN_ADDR names an
// address payd refuses, so a replica starts only if the harness gives it
// an admin address of its own, as replicas on one host need. Under the
// race detector, which makes every process several times slower, the
// clients wait four times as long before they time out and retry; the
// checks are the same.
func chaosConfig(t *testing.T) *chaos.Config {
	cfg := &chaos.Config{
		Command:       []string{os.Args[0], "-test.run=^$", "--"},
		Env:           []string{childEnv + "=1", envName("admin-addr") + "=shared.invalid:9090"},
		Seed:          1,
		Duration:      15 * time.Second,
		Rate:          10,
		FaultInterval: 300 * time.Millisecond,
		FailpointRate: 0.03,
		WorkDir:       t.TempDir(),
		Progress:      testLog{t},
	}
	if raceEnabled {
		cfg.ClientTimeoutMin, cfg.ClientTimeoutMax = 4*chaos.DefaultClientTimeoutMin, 4*chaos.DefaultClientTimeoutMax
	}
	return cfg
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\r\n"))
	return len(p), nil
}

func TestChaosSchedule(t *testing.T) {
	for _, faults := range []string{"all", "all,-db"} {
		cfg := chaosConfig(t)
		cfg.Faults, _ = chaos.ParseFaults(faults)
		counts := chaos.NewSchedule(cfg.Seed, cfg).Count()
		for _, k := range cfg.Faults {
			if strings.HasPrefix(string(k), "kill-after") {
				continue
			}
			if want := map[chaos.Kind]int{chaos.KillRandom: 2, chaos.Pause: 2}[k]; counts[k] < max(want, 1) {
				t.Errorf("faults %s: seed 1's schedule holds %d %s, want at least %d: pick another seed for the chaos tests", faults, counts[k], k, max(want, 1))
			}
		}
	}
}

// runChaos runs cfg and checks what every passing run of payd must show:
// no violation, and at least one fault of each kind injected.
func checkChaos(t *testing.T, cfg *chaos.Config) *chaos.Report {
	t.Helper()
	rep, err := chaos.Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	rep.WriteText(&text)
	t.Log("\n" + text.String())
	if !rep.Passed || rep.DoubleCharges != 0 || rep.LostCharges != 0 || rep.StuckPayments != 0 || rep.Mismatched2xx != 0 {
		t.Fatalf("payd failed chaos: %v", rep.Violations)
	}
	for _, k := range rep.FaultKinds {
		if rep.Faults[k] == 0 {
			t.Errorf("no %s injected", k)
		}
	}
	if rep.Clients.Acknowledged < 50 || rep.MoneyCharges < 50 {
		t.Errorf("%d charges acknowledged and %d charged: too few to prove anything", rep.Clients.Acknowledged, rep.MoneyCharges)
	}
	return rep
}

// TestChaosSQLite: two replicas on one SQLite file, every fault that
// applies, and the naive processor beside them, which double-charges.
func TestChaosSQLite(t *testing.T) {
	cfg := chaosConfig(t)
	cfg.Replicas = 2
	rep := checkChaos(t, cfg)
	if rep.Database != "sqlite" || rep.Naive == nil || rep.Naive.DoubleCharges == 0 {
		t.Fatalf("want a SQLite run with the naive processor's double charges beside payd's none; got %s, %+v", rep.Database, rep.Naive)
	}
}

// TestChaosPostgres: three replicas on PostgreSQL, every fault, database
// resets and latency included.
func TestChaosPostgres(t *testing.T) {
	cfg := chaosConfig(t)
	cfg.DatabaseURL, cfg.ExistingDatabase = pgtest.Database(t), true
	cfg.Target = chaos.TargetPayd
	rep := checkChaos(t, cfg)
	if rep.Database != "postgres" || rep.Faults[chaos.DBReset] == 0 || rep.Naive != nil {
		t.Fatalf("want a PostgreSQL run of payd alone with database resets; got %s, %d resets", rep.Database, rep.Faults[chaos.DBReset])
	}
}

// TestChaosNaiveDoubleCharges: under the same workload and faults the
// naive processor double-charges and loses charges, and that does not fail
// the run: it is the contrast.
func TestChaosNaiveDoubleCharges(t *testing.T) {
	cfg := chaosConfig(t)
	cfg.Target = chaos.TargetNaive
	cfg.Duration = 8 * time.Second
	rep, err := chaos.Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Target != chaos.TargetNaive || rep.DoubleCharges == 0 || rep.LostCharges == 0 || !rep.Passed {
		t.Fatalf("naive run: target %s, %d double and %d lost charges, passed %t; want naive, some of each, and a pass",
			rep.Target, rep.DoubleCharges, rep.LostCharges, rep.Passed)
	}
}

func TestChaosHelp(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"payd", "chaos", "--help"}, func(string) string { return "" }, nil, &out, &out); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"--seed", "PAYD_SEED", "--replicas", "--database-url", "--json", "--provider-max-delay", "kill-after-send", "provider-drop",
		"provider-late", "provider-in-flight", "provider-other-amount"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("payd chaos --help lacks %q:\n%s", s, out.String())
		}
	}
	err := run(context.Background(), []string{"payd", "chaos", "--faults", "meteor"}, func(string) string { return "" }, nil, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "meteor") {
		t.Errorf("an unknown fault: %v", err)
	}
}
