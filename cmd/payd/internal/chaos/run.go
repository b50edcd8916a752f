package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/idemhq/idem/cmd/payd/internal/provider"
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

// run holds one run's parts, for teardown.
type run struct {
	cfg      Config
	progress *progress

	workDir     string
	tempDir     bool
	keptWorkDir bool
	adminURL    string // the server a database was created on
	createdDB   string

	ctl        *http.Client // to the simulators' control API
	sims       []*child
	proxies    []*faultproxy.Proxy
	db         *paydDB
	sup        *supervisor
	naive      *naive
	forwarder  *forwarder
	injector   *injector
	targets    []*target
	background sync.WaitGroup
}

var simReady = regexp.MustCompile(`provider simulator on (http://\S+)`)

func (r *run) run(ctx context.Context) (*Report, error) {
	c := &r.cfg
	paydOn, naiveOn := c.Target != TargetNaive, c.Target != TargetPayd
	rep := &Report{Seed: c.Seed, Replicas: c.Replicas, Database: "sqlite", Skipped: []string{}, Violations: []string{}}
	postgres := c.DatabaseURL != ""
	if postgres {
		rep.Database = "postgres"
	}
	if !paydOn {
		rep.Replicas, rep.Database = 0, "none"
	}

	if c.WorkDir == "" {
		dir, err := os.MkdirTemp("", "payd-chaos-")
		if err != nil {
			return nil, err
		}
		r.workDir, r.tempDir = dir, true
	} else {
		if err := os.MkdirAll(c.WorkDir, 0o755); err != nil {
			return nil, err
		}
		r.workDir = c.WorkDir
	}
	l := newLauncher(c.Command, c.Env)

	// What this payd has: webhooks, a bound on the provider's delay, and
	// payd verify.
	var help string
	if paydOn || c.Webhooks != ModeOff {
		var err error
		if help, err = l.output(ctx, 30*time.Second, "serve", "--help"); err != nil {
			return nil, fmt.Errorf("chaos: payd serve --help failed (%v): %s", err, help)
		}
	}
	maxDelay := strings.Contains(help, "--provider-max-delay")
	webhooks := false
	if c.Webhooks != ModeOff {
		webhooks = strings.Contains(help, "--webhook-secret")
		if !webhooks && c.Webhooks == ModeOn {
			return nil, errors.New("chaos: --webhooks on, but payd serve --help lists no --webhook-secret: this payd takes no webhooks")
		}
		if !webhooks {
			rep.Skipped = append(rep.Skipped, "webhooks and their faults: payd serve --help lists no --webhook-secret")
		}
	} else {
		rep.Skipped = append(rep.Skipped, "webhooks and their faults: --webhooks off")
	}
	rep.Webhooks = webhooks && paydOn
	verify := false
	if paydOn {
		// Only a payd that does not know the command goes without its
		// strongest check; any other failure to ask is the run's.
		out, err := l.output(ctx, 30*time.Second, "verify", "--help")
		switch {
		case err == nil:
			verify = true
		case !strings.Contains(out, `unknown command "verify"`):
			return nil, fmt.Errorf("chaos: asking payd verify --help: %w: %.300s", err, out)
		}
	}

	// The faults that apply here.
	kinds, skipped := applicable(c.Faults, setting{postgres: postgres, webhooks: webhooks, payd: paydOn, maxDelay: maxDelay})
	rep.Skipped = append(rep.Skipped, skipped...)
	c.Faults = kinds
	rep.FaultKinds = kinds
	sched := NewSchedule(c.Seed, c)
	rep.ScheduleDigest = sched.Digest()
	if err := writeSchedule(filepath.Join(r.workDir, "schedule.txt"), sched); err != nil {
		return nil, err
	}
	r.progress.say("payd chaos: seed %d, schedule %s (%d timed faults over %s), target %s, %s",
		c.Seed, rep.ScheduleDigest, len(sched.Events), c.Duration, c.Target, where(rep))

	// payd's database, migrated once.
	var databaseURL string
	if paydOn {
		switch {
		case postgres && !c.ExistingDatabase:
			name := databaseName(c.Seed)
			u, err := createDatabase(ctx, c.DatabaseURL, name)
			if err != nil {
				return nil, fmt.Errorf("chaos: %w", err)
			}
			databaseURL, r.adminURL, r.createdDB = u, c.DatabaseURL, name
			r.progress.say("created database %s", name)
		case postgres:
			databaseURL = c.DatabaseURL
		default:
			databaseURL = filepath.Join(r.workDir, "payd.db")
		}
		if out, err := l.output(ctx, 2*time.Minute, "migrate", "--database-url", databaseURL); err != nil {
			return nil, fmt.Errorf("chaos: payd migrate failed (%v): %s", err, strings.TrimSpace(out))
		}
		db, err := openPaydDB(ctx, databaseURL)
		if err != nil {
			return nil, fmt.Errorf("chaos: open payd's database to check it: %w", err)
		}
		r.db = db
		if err := db.inspect(ctx); err != nil {
			return nil, fmt.Errorf("chaos: read payd's schema: %w", err)
		}
		if _, n, err := db.notFinal(ctx); err != nil || n > 0 {
			return nil, fmt.Errorf("chaos: the database already holds %d payments (%v): chaos needs an empty one to check", n, err)
		}
	}

	// The providers, each behind a proxy.
	base := baseFaults(c)
	secret := fmt.Sprintf("whsec_chaos_%016x", derive(c.Seed, "webhook-secret"))
	apiKey := fmt.Sprintf("sk_chaos_%016x", derive(c.Seed, "api-key"))
	var paydSim, naiveSim string
	var paydLink, naiveLink *faultproxy.Proxy
	startProvider := func(name string, n int, hooks bool) (string, *faultproxy.Proxy, error) {
		args := []string{"provider-sim", "--addr", "127.0.0.1:0", "--seed", strconv.FormatUint(derive(c.Seed, "provider", n), 10), "--hang-for", base.HangFor.String()}
		if hooks {
			f, err := startForwarder(c.Seed, func(rng *rand.Rand) (string, bool) {
				if r.sup == nil {
					return "", false
				}
				return r.sup.pick(rng)
			})
			if err != nil {
				return "", nil, err
			}
			r.forwarder = f
			args = append(args, "--webhook-url", f.url, "--webhook-secret", secret)
		}
		logf, err := createLog(filepath.Join(r.workDir, name+".log"))
		if err != nil {
			return "", nil, err
		}
		sim, err := l.start(args, logf, simReady)
		if err != nil {
			logf.Close()
			return "", nil, err
		}
		r.sims = append(r.sims, sim)
		go func() { <-sim.exited; logf.Close() }()
		if err := sim.awaitReady(30 * time.Second); err != nil {
			return "", nil, fmt.Errorf("chaos: the provider simulator %w", err)
		}
		u := sim.baseURL()
		hp, err := url.Parse(u)
		if err != nil {
			return "", nil, err
		}
		p, err := faultproxy.Start(name, hp.Host)
		if err != nil {
			return "", nil, err
		}
		r.proxies = append(r.proxies, p)
		return u, p, nil
	}
	var err error
	if paydOn {
		if paydSim, paydLink, err = startProvider("provider", 0, webhooks); err != nil {
			return nil, err
		}
	}
	if naiveOn {
		if naiveSim, naiveLink, err = startProvider("provider-naive", 1, false); err != nil {
			return nil, err
		}
	}
	var sims []string
	var links []*faultproxy.Proxy
	for _, s := range []struct {
		url  string
		link *faultproxy.Proxy
	}{{paydSim, paydLink}, {naiveSim, naiveLink}} {
		if s.url != "" {
			sims, links = append(sims, s.url), append(links, s.link)
			if err := setSimFaults(ctx, r.ctl, s.url, base); err != nil {
				return nil, err
			}
		}
	}

	// payd's replicas.
	var dbLink *faultproxy.Proxy
	if paydOn {
		replicaURL := databaseURL
		if postgres {
			hp, err := hostPort(databaseURL)
			if err != nil {
				return nil, err
			}
			if dbLink, err = faultproxy.Start("postgres", hp); err != nil {
				return nil, err
			}
			r.proxies = append(r.proxies, dbLink)
			if replicaURL, err = viaProxy(databaseURL, dbLink.Addr(), poolSize); err != nil {
				return nil, err
			}
		}
		args := []string{
			"--addr", "127.0.0.1:0", "--database-url", replicaURL, "--provider-url", "http://" + paydLink.Addr(),
			"--api-key", apiKey, "--role", "all", "--workers", strconv.Itoa(c.Workers),
			"--lease", c.Lease.String(), "--provider-timeout", c.ProviderTimeout.String(), "--retry-base", c.RetryBase.String(),
			"--shutdown-grace", shutdownGrace.String(), "--migrate=false", "--log-format", "json",
		}
		if webhooks {
			args = append(args, "--webhook-secret", secret)
		}
		if maxDelay {
			args = append(args, "--provider-max-delay", c.ProviderMaxDelay.String())
		}
		var fps []string
		for _, k := range kinds {
			if p := info(k).failpoint; p != "" {
				fps = append(fps, fmt.Sprintf("%s=%g", p, c.FailpointRate))
			}
		}
		sup, err := newSupervisor(l, c.Seed, c.Replicas, args, strings.Join(fps, ","), r.workDir, shutdownGrace)
		if err != nil {
			return nil, err
		}
		r.sup = sup
		r.progress.say("starting %d payd replica(s)…", c.Replicas)
		if err := sup.start(readyTimeout); err != nil {
			return nil, fmt.Errorf("chaos: %w", err)
		}
	}

	// The naive processor.
	if naiveOn {
		nv, err := startNaive(c.Seed, "http://"+naiveLink.Addr(), c.ProviderTimeout, c.FailpointRate, c.enabled(KillAfterSend), c.enabled(KillAfterResponse))
		if err != nil {
			return nil, err
		}
		r.naive = nv
	}

	var paydT, naiveT *target
	if paydOn {
		paydT = newTarget(TargetPayd, false, c.Seed, apiKey, c.Concurrency, r.sup.pick)
		r.targets = append(r.targets, paydT)
		if c.Refunds != ModeOff {
			ok, why, err := r.probeRefunds(ctx, paydT)
			if err != nil {
				return nil, err
			}
			if !ok && c.Refunds == ModeOn {
				return nil, fmt.Errorf("chaos: --refunds on, but %s", why)
			}
			if !ok {
				rep.Skipped = append(rep.Skipped, "refunds: "+why)
			}
			paydT.refunds = ok
		} else {
			rep.Skipped = append(rep.Skipped, "refunds: --refunds off")
		}
		rep.Refunds = paydT.refunds
	}
	if naiveOn {
		naiveT = newTarget(TargetNaive, true, c.Seed, "", c.Concurrency, func(*rand.Rand) (string, bool) { return r.naive.url, true })
		r.targets = append(r.targets, naiveT)
	}

	// The run: faults and clients until Duration, then the drain.
	r.injector = newInjector(r.ctl, sched, base, sims, links, dbLink, r.sup, r.naive)
	w := &workload{seed: c.Seed, cfg: c, targets: r.targets}
	start := time.Now()
	runCtx, stopRun := context.WithTimeout(ctx, c.Duration)
	defer stopRun()
	clientCtx, stopClients := context.WithCancel(ctx)
	defer stopClients()
	r.background.Go(func() { r.injector.run(ctx, runCtx, start) })
	r.background.Go(func() { w.run(runCtx, clientCtx) })
	r.progress.say("running for %s…", c.Duration)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for runCtx.Err() == nil {
		select {
		case <-runCtx.Done():
		case <-tick.C:
			r.progress.update(r.status(start, c.Duration, paydT, naiveT))
		}
	}
	r.background.Wait()
	if err := ctx.Err(); err != nil {
		stopClients()
		w.wait()
		r.progress.done()
		return nil, fmt.Errorf("chaos: stopped: %w", err)
	}
	rep.DurationS = time.Since(start).Seconds()

	drainStart := time.Now()
	r.progress.say("draining: faults healed, every replica restarted without failpoints, waiting for every payment to be final (at most %s)…", c.DrainTimeout)
	if err := r.injector.heal(ctx); err != nil {
		rep.Skipped = append(rep.Skipped, "part of the drain: "+err.Error())
	}
	if r.sup != nil {
		r.sup.recycle()
	}
	deadline := time.Now().Add(c.DrainTimeout)
	var settledAt time.Time // when no payment was left open
	for {
		notFinal, all := 0, 0
		if r.db != nil {
			n, a, err := r.db.notFinal(ctx)
			if err != nil {
				n = -1
			}
			notFinal, all = n, a
		}
		inFlight := int64(0)
		for _, t := range r.targets {
			inFlight += t.inFlight.Load()
		}
		held := map[string]bool{}
		if r.db != nil {
			// A held payment or refund waits for an operator, and so does
			// its client: the drain waits for neither. An error only
			// makes the drain wait longer.
			if held, _ = r.db.held(ctx); len(held) > 0 {
				inFlight -= int64(paydT.waitingOn(held))
			}
		}
		if notFinal == 0 && settledAt.IsZero() {
			settledAt = time.Now()
		}
		// Once every payment is final, clients get clientGrace to see it.
		late := !settledAt.IsZero() && time.Since(settledAt) > clientGrace
		if notFinal == 0 && inFlight == 0 || late || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		line := fmt.Sprintf("drain %s | payments and refunds not final %s (of %s payments) | clients in flight %d", clock(time.Since(drainStart)), itoa(notFinal), itoa(all), inFlight)
		if len(held) > 0 {
			line += fmt.Sprintf(" | held %d (not waited for)", len(held))
		}
		if r.sup != nil {
			line += fmt.Sprintf(" | replicas up %d/%d", r.sup.upCount(), c.Replicas)
		}
		r.progress.update(line)
		sleepCtx(ctx, 500*time.Millisecond)
	}
	stopClients()
	w.wait()
	for _, t := range r.targets {
		if n := t.comeBack(ctx); n > 0 {
			r.progress.say("%s: %s clients that had stopped following came back and saw their outcome", t.name, itoa(n))
		}
	}
	rep.DrainS = time.Since(drainStart).Seconds()
	r.progress.done()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("chaos: stopped: %w", err)
	}
	r.progress.say("drained in %s; checking…", time.Duration(rep.DrainS*float64(time.Second)).Round(100*time.Millisecond))

	// The oracles.
	paydFaults, naiveFaults, missed, injErrs := r.injector.counts()
	if paydOn {
		// The simulator's counts first: they explain what the oracles
		// find held.
		st, err := simStats(ctx, paydSim)
		if err != nil {
			return nil, fmt.Errorf("chaos: read the simulator's counts: %w", err)
		}
		rep.Provider = st
		ev, err := r.paydEvidence(ctx, paydSim, paydT)
		if err != nil {
			return nil, err
		}
		ev.otherAmounts = st.OtherAmounts
		tr := &rep.TargetReport
		tr.Target = TargetPayd
		tr.Requests = paydT.requests.Load()
		tr.Clients.Timeouts, tr.Clients.Retries = paydT.timeouts.Load(), paydT.retries.Load()
		ev.judge(tr)
		tr.Checks = append(tr.Checks, served(tr), unexpectedAnswers(ev.records), clientsDone(ev.records, ev.explain().ids()), injected(injErrs))
		ps := r.sup.stats()
		tr.Faults = map[Kind]int{}
		for _, k := range kinds {
			tr.Faults[k] = paydFaults[k] + ps.failpointKills[k]
			if info(k).failpoint != "" {
				tr.FailpointKills += ps.failpointKills[k]
			}
		}
		rep.Processes = ProcessReport{Restarts: ps.restarts, StartFailures: len(ps.startFailures), UnexpectedExits: append([]string{}, ps.unexpected...)}
		for _, n := range missed {
			rep.Processes.MissedFaults += n
		}
		exits := Check{Name: "payd never exited on its own", Status: Pass, Detail: fmt.Sprintf("each of %s restarts followed a kill or a stop by the harness", itoa(ps.restarts))}
		if len(ps.unexpected) > 0 {
			exits.Status, exits.Detail, exits.Examples = Fail, fmt.Sprintf("%d payd processes exited without being killed", len(ps.unexpected)), examples(ps.unexpected)
		}
		tr.Checks = append(tr.Checks, exits, startedAgain(ps.startFailures, slices.Contains(kinds, DBReset) || slices.Contains(kinds, DBLatency)))
		tr.Checks = append(tr.Checks, ev.storeChecks(tr)...)
		tr.Checks = append(tr.Checks, r.verify(ctx, l, verify, databaseURL, paydSim))
		for _, ch := range tr.Checks {
			if ch.Status == Fail {
				rep.Violations = append(rep.Violations, ch.Name+": "+ch.Detail)
			}
		}
	}
	if naiveOn {
		tr := &TargetReport{}
		if !paydOn {
			tr = &rep.TargetReport
		} else {
			rep.Naive = tr
		}
		ev, err := r.naiveEvidence(ctx, naiveSim, naiveT)
		if err != nil {
			return nil, err
		}
		tr.Target = TargetNaive
		tr.Requests = naiveT.requests.Load()
		tr.Clients.Timeouts, tr.Clients.Retries = naiveT.timeouts.Load(), naiveT.retries.Load()
		ev.judge(tr)
		tr.Checks = append(tr.Checks, clientsDone(ev.records, nil))
		crashes, _ := r.naive.stats()
		tr.Faults = map[Kind]int{}
		for _, k := range kinds {
			switch {
			case k == KillAfterSend || k == KillAfterResponse:
				tr.Faults[k] = crashes[k]
				tr.FailpointKills += crashes[k]
			case k == KillRandom || strings.HasPrefix(string(k), "provider-"):
				tr.Faults[k] = naiveFaults[k]
			}
		}
	}
	rep.Passed = len(rep.Violations) == 0
	return rep, nil
}

// setting is what a run has for faults to break.
type setting struct {
	postgres bool // a network hop to the database
	webhooks bool // payd takes webhooks
	payd     bool // payd is a target
	maxDelay bool // payd serve takes --provider-max-delay
}

// applicable returns the kinds of enabled that apply in setting s, never
// nil (a nil Config.Faults means every kind), and a line for the report
// per reason others do not.
func applicable(enabled []Kind, s setting) (kinds []Kind, skipped []string) {
	kinds = []Kind{}
	var noDB, noHooks, noDelay, off []Kind
	for _, k := range Kinds() {
		switch {
		case !slices.Contains(enabled, k):
			off = append(off, k)
		case info(k).postgres && !s.postgres:
			noDB = append(noDB, k)
		case info(k).webhooks && !s.webhooks:
			noHooks = append(noHooks, k)
		case info(k).late && s.payd && !s.maxDelay:
			noDelay = append(noDelay, k)
		default:
			kinds = append(kinds, k)
		}
	}
	for _, r := range []struct {
		kinds []Kind
		why   string
	}{
		{noDB, "SQLite has no network hop between payd and its database to break"},
		{noHooks, "payd takes no webhooks"},
		// A payd that cannot be told how late the provider may act has
		// no rule for when a "not found" is final: a late execution would
		// test a guarantee it does not claim.
		{noDelay, "payd serve --help lists no --provider-max-delay: this payd cannot be told how late the provider may act on a request"},
		{off, "not enabled (--faults)"},
	} {
		if len(r.kinds) > 0 {
			skipped = append(skipped, fmt.Sprintf("%s: %s", joinKinds(r.kinds), r.why))
		}
	}
	return kinds, skipped
}

// status is the progress line while faults run.
func (r *run) status(start time.Time, d time.Duration, paydT, naiveT *target) string {
	s := fmt.Sprintf("chaos %s/%s", clock(time.Since(start)), clock(d))
	if paydT != nil {
		faults, _, _, _ := r.injector.counts()
		n := 0
		for _, v := range faults {
			n += v
		}
		kills := 0
		for _, v := range r.sup.stats().failpointKills {
			kills += v
		}
		s += fmt.Sprintf(" | payd: %s requests, %d in flight, %s faults + %s failpoint kills, %d/%d up",
			itoa(int(paydT.requests.Load())), paydT.inFlight.Load(), itoa(n), itoa(kills), r.sup.upCount(), r.cfg.Replicas)
	}
	if naiveT != nil {
		s += fmt.Sprintf(" | naive: %s requests, %d in flight", itoa(int(naiveT.requests.Load())), naiveT.inFlight.Load())
	}
	return s
}

// probeRefunds finds out whether payd has refunds: it makes a charge,
// waits for it to succeed, and asks to refund 1 of it. 404 or 405 means
// no; a 2xx means yes, and the refund is part of the run.
func (r *run) probeRefunds(ctx context.Context, t *target) (bool, string, error) {
	p := plan{i: -1, key: fmt.Sprintf("chaos-%x-probe", r.cfg.Seed), reference: fmt.Sprintf("chaos_%x_probe", r.cfg.Seed),
		amount: 1000, wait: 10, timeout: 15 * time.Second, refund: 1}
	rec := &record{plan: p, start: time.Now()}
	t.mu.Lock()
	t.records = append(t.records, rec)
	t.mu.Unlock()
	defer rec.setPhase("done")
	pctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	t.accept(pctx, rec, 0)
	first, ok := rec.firstSeen()
	if !ok {
		return false, "", fmt.Errorf("chaos: payd accepted no charge within a minute before any fault: see replica-*.log in %s", r.workDir)
	}
	state := first.State
	if !isFinal(state) {
		state = t.poll(pctx, rec, first.ID)
	}
	if state != "succeeded" {
		return false, "", fmt.Errorf("chaos: payd did not charge the first charge before any fault (%q): see replica-*.log in %s", state, r.workDir)
	}
	base, _ := t.pick(stream(r.cfg.Seed, "probe"))
	body, _ := json.Marshal(map[string]any{"amount": p.refund})
	a, err := t.do(pctx, http.MethodPost, base+"/v1/charges/"+first.ID+"/refunds", p.key+"-refund", body, 0, 15*time.Second)
	switch {
	case err != nil:
		return false, "", fmt.Errorf("chaos: probing refunds: %w", err)
	case a.status == http.StatusNotFound || a.status == http.StatusMethodNotAllowed:
		return false, fmt.Sprintf("POST /v1/charges/{id}/refunds answered %d: this payd has no refunds", a.status), nil
	case a.status < 200 || a.status >= 300:
		// Before any fault, a payd with refunds accepts this one; turning
		// the refund checks off here would hide whatever went wrong.
		return false, "", fmt.Errorf("chaos: probing refunds, before any fault: POST /v1/charges/{id}/refunds answered %d: %.200s (see replica-*.log in %s)", a.status, a.body, r.workDir)
	}
	if !t.refund(pctx, rec, first.ID) { // the same key: follows the refund to its end
		return false, "", fmt.Errorf("chaos: payd did not settle the probe's refund within a minute before any fault: see replica-*.log in %s", r.workDir)
	}
	return true, "", nil
}

func (r *run) paydEvidence(ctx context.Context, simURL string, t *target) (*evidence, error) {
	ev := &evidence{records: t.snapshot(), refunded: t.refunds}
	var err error
	if ev.charges, ev.refunds, err = providerLedger(ctx, simURL); err != nil {
		return nil, err
	}
	if ev.payments, err = r.db.payments(ctx); err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	if ev.store, err = r.db.store(ctx); err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	return ev, nil
}

func (r *run) naiveEvidence(ctx context.Context, simURL string, t *target) (*evidence, error) {
	ev := &evidence{records: t.snapshot(), payments: r.naive.payments()}
	var err error
	if ev.charges, ev.refunds, err = providerLedger(ctx, simURL); err != nil {
		return nil, err
	}
	return ev, nil
}

// providerLedger lists every charge and refund the simulator at url made.
func providerLedger(ctx context.Context, simURL string) ([]provider.Charge, []provider.Refund, error) {
	cl, err := provider.NewClient(simURL, &provider.ClientConfig{Timeout: 2 * time.Minute})
	if err != nil {
		return nil, nil, err
	}
	defer cl.CloseIdleConnections()
	charges, err := provider.Collect(cl.Charges(ctx, time.Time{}, time.Time{}))
	if err != nil {
		return nil, nil, fmt.Errorf("chaos: list the provider's charges: %w", err)
	}
	refunds, err := provider.Collect(cl.Refunds(ctx, time.Time{}, time.Time{}))
	if err != nil {
		return nil, nil, fmt.Errorf("chaos: list the provider's refunds: %w", err)
	}
	return charges, refunds, nil
}

func simStats(ctx context.Context, simURL string) (ProviderStats, error) {
	var st ProviderStats
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, simURL+"/_stats", nil)
	if err != nil {
		return st, err
	}
	cl := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := cl.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// verify runs payd verify, when this payd has it: its own check of every
// money invariant, against the database and the provider.
func (r *run) verify(ctx context.Context, l *launcher, available bool, databaseURL, simURL string) Check {
	v := Check{Name: "payd verify passes"}
	if !available {
		v.Status, v.Detail = Skipped, "payd verify not available (payd verify --help failed)"
		return v
	}
	out, err := l.output(ctx, 5*time.Minute, "verify", "--database-url", databaseURL, "--provider-url", simURL)
	_ = os.WriteFile(filepath.Join(r.workDir, "verify.txt"), []byte(out), 0o644)
	if err != nil {
		v.Status, v.Detail = Fail, fmt.Sprintf("payd verify exited with %v: %s", err, lastLine(out))
		v.Examples = violationLines(out)
	} else {
		v.Status, v.Detail = Pass, "payd verify exited 0: "+lastLine(out)
	}
	return v
}

// violationLines picks a few lines of payd verify's report to show.
func violationLines(out string) []string {
	var ex []string
	for _, line := range strings.Split(out, "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "payd verify:") {
			ex = append(ex, line)
		}
	}
	if len(ex) > 2*maxExamples {
		ex = append(ex[:2*maxExamples], "… (verify.txt has the rest)")
	}
	return ex
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// teardown stops everything the run started, in order, and removes the
// database and the work directory unless told to keep them.
func (r *run) teardown(keepDB, keepDir bool) {
	for _, t := range r.targets {
		t.close()
	}
	if r.sup != nil {
		r.sup.stop()
	}
	if r.naive != nil {
		r.naive.close()
	}
	if r.forwarder != nil {
		r.forwarder.close()
	}
	for _, s := range r.sims {
		s.stop(10 * time.Second)
	}
	for _, p := range r.proxies {
		p.Close()
	}
	if r.db != nil {
		r.db.close()
	}
	r.ctl.CloseIdleConnections()
	if r.createdDB != "" {
		if keepDB {
			r.progress.say("kept database %s", r.createdDB)
		} else if err := dropDatabase(context.Background(), r.adminURL, r.createdDB); err != nil {
			r.progress.say("could not drop database %s: %v", r.createdDB, err)
		}
	}
	switch {
	case r.workDir == "":
	case keepDir || !r.tempDir:
		r.keptWorkDir = true
	default:
		os.RemoveAll(r.workDir)
		r.workDir = ""
	}
}

func writeSchedule(path string, s Schedule) error {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d, schedule %s, %d events\n", s.Seed, s.Digest(), len(s.Events))
	for _, e := range s.Events {
		b.WriteString(e.String())
		b.WriteString("\n")
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
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

func joinKinds(ks []Kind) string {
	var s []string
	for _, k := range ks {
		s = append(s, string(k))
	}
	return strings.Join(s, ", ")
}
