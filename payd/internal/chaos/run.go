package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"regexp"
	"sync"
	"time"

	"github.com/idemhq/idem/internal/faultproxy"
)

// Payd's tuning in a run; the rest comes from Config.
const (
	shutdownGrace = 2 * time.Second
	poolSize      = 10 // connections per replica: three replicas and their restarts fit PostgreSQL's default 100
	readyTimeout  = 60 * time.Second
	clientGrace   = 30 * time.Second // for clients to see outcomes once all are final
)

// The simulators' faults outside every window: latency that client
// timeouts (150–600ms by default) often lose to when they wait for the
// outcome, hangs that outlast payd's provider timeout, and the run's range
// of late executions, well under payd's bound on the provider's delay.
func baseFaults(c *Config) simFaults {
	return simFaults{
		LatencyMin: 20 * time.Millisecond, LatencyMax: 250 * time.Millisecond, HangFor: 3 * c.ProviderTimeout,
		LateMin: lateMin, LateMax: lateDelayMax(c.ProviderMaxDelay),
	}
}

// Run runs chaos with cfg: it starts the processes, plays the schedule
// while clients send charges, drains, checks the oracles and returns the
// report. The error is for a run that could not be carried out (a process
// that would not start, a database that cannot be created, ctx ended); a
// run that found violations returns its report with Passed false.
func Run(ctx context.Context, cfg *Config) (*Report, error) {
	c, err := cfg.resolve()
	if err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	for c.Seed == 0 {
		c.Seed = rand.Uint64()
	}
	r := &run{cfg: c, progress: &progress{w: c.Progress, tty: c.ProgressTTY}, ctl: &http.Client{Transport: &http.Transport{}}}
	rep, err := r.run(ctx)
	failed := err == nil && !rep.Passed
	// A failed run keeps its database and logs for a post-mortem; a run
	// that could not finish keeps its logs, which say why.
	r.teardown(failed || c.KeepWorkDir, err != nil || failed || c.KeepWorkDir)
	if err != nil {
		if r.workDir != "" {
			err = fmt.Errorf("%w (logs kept in %s)", err, r.workDir)
		}
		return nil, err
	}
	if r.keptWorkDir {
		rep.WorkDir = r.workDir
	}
	return rep, nil
}

// run holds one run's parts, for its steps and for teardown.
type run struct {
	cfg      Config
	progress *progress
	launcher *launcher
	rep      *Report
	has      features

	workDir     string
	tempDir     bool
	keptWorkDir bool
	adminURL    string // the server a database was created on
	createdDB   string
	databaseURL string // payd's, "" without payd

	ctl        *http.Client // to the simulators' control API
	base       simFaults    // the simulators' faults outside every window
	sched      Schedule
	sims       []*child
	proxies    []*faultproxy.Proxy
	paydSim    string // the URL of payd's simulator, "" without payd
	naiveSim   string // the URL of the naive processor's simulator, "" without it
	paydLink   *faultproxy.Proxy
	naiveLink  *faultproxy.Proxy
	dbLink     *faultproxy.Proxy // between payd and PostgreSQL, nil on SQLite
	db         *paydDB
	sup        *supervisor
	naive      *naive
	forwarder  *forwarder
	injector   *injector
	targets    []*target
	paydT      *target
	naiveT     *target
	background sync.WaitGroup
}

var simReady = regexp.MustCompile(`provider simulator on (http://\S+)`)

// run carries the run out, step by step: it finds out what payd has,
// plans the faults, starts the processes and the clients, plays the
// schedule, drains and judges.
func (r *run) run(ctx context.Context) (*Report, error) {
	r.rep = newReport(&r.cfg)
	if err := r.makeWorkDir(); err != nil {
		return nil, err
	}
	r.launcher = newLauncher(r.cfg.Command, r.cfg.Env)
	if err := r.probePayd(ctx); err != nil {
		return nil, err
	}
	if err := r.planFaults(); err != nil {
		return nil, err
	}
	if err := r.start(ctx); err != nil {
		return nil, err
	}
	clientCtx, stopClients := context.WithCancel(ctx)
	defer stopClients()
	w := &workload{seed: r.cfg.Seed, cfg: &r.cfg, targets: r.targets}
	if err := r.play(ctx, clientCtx, w); err != nil {
		stopClients()
		w.wait()
		r.progress.done()
		return nil, err
	}
	if err := r.drain(ctx, stopClients, w); err != nil {
		return nil, err
	}
	if err := r.judge(ctx); err != nil {
		return nil, err
	}
	return r.rep, nil
}

// paydOn reports whether payd is a target of the run.
func (r *run) paydOn() bool { return r.cfg.Target != TargetNaive }

// naiveOn reports whether the naive processor is a target of the run.
func (r *run) naiveOn() bool { return r.cfg.Target != TargetPayd }

// postgres reports whether payd runs on PostgreSQL, over a network hop.
func (r *run) postgres() bool { return r.cfg.DatabaseURL != "" }

// webhookSecret is what payd's simulator signs its webhooks with.
func (r *run) webhookSecret() string {
	return fmt.Sprintf("whsec_chaos_%016x", derive(r.cfg.Seed, "webhook-secret"))
}

// apiKey is the key payd's clients authenticate with.
func (r *run) apiKey() string { return fmt.Sprintf("sk_chaos_%016x", derive(r.cfg.Seed, "api-key")) }

// newReport is the report of a run of c before it starts.
func newReport(c *Config) *Report {
	rep := &Report{Seed: c.Seed, Replicas: c.Replicas, Database: "sqlite", Skipped: []string{}, Violations: []string{}}
	if c.DatabaseURL != "" {
		rep.Database = "postgres"
	}
	if c.Target == TargetNaive {
		rep.Replicas, rep.Database = 0, "none"
	}
	return rep
}

// makeWorkDir makes the run's work directory: Config.WorkDir, or a
// temporary one.
func (r *run) makeWorkDir() error {
	c := &r.cfg
	if c.WorkDir == "" {
		dir, err := os.MkdirTemp("", "payd-chaos-")
		if err != nil {
			return err
		}
		r.workDir, r.tempDir = dir, true
		return nil
	}
	if err := os.MkdirAll(c.WorkDir, 0o755); err != nil {
		return err
	}
	r.workDir = c.WorkDir
	return nil
}

func where(rep *Report) string {
	switch rep.Database {
	case "none":
		return "no payd"
	case "postgres":
		return fmt.Sprintf("%d replica(s) on PostgreSQL", rep.Replicas)
	}
	return fmt.Sprintf("%d replica(s) on SQLite", rep.Replicas)
}
