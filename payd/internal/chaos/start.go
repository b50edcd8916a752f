package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/idemhq/idem/internal/faultproxy"
)

// start starts what the run drives: payd's database, the providers, payd's
// replicas, the naive processor, and the targets the clients send to.
func (r *run) start(ctx context.Context) error {
	if r.paydOn() {
		if err := r.prepareDatabase(ctx); err != nil {
			return err
		}
	}
	r.base = baseFaults(&r.cfg)
	if err := r.startProviders(ctx); err != nil {
		return err
	}
	if r.paydOn() {
		if err := r.startReplicas(); err != nil {
			return err
		}
	}
	if r.naiveOn() {
		c := &r.cfg
		nv, err := startNaive(c.Seed, "http://"+r.naiveLink.Addr(), c.ProviderTimeout, c.FailpointRate, c.enabled(KillAfterSend), c.enabled(KillAfterResponse))
		if err != nil {
			return err
		}
		r.naive = nv
	}
	return r.startTargets(ctx)
}

// prepareDatabase makes payd's database, migrated once, and opens it to
// check: it must hold no payment yet.
func (r *run) prepareDatabase(ctx context.Context) error {
	c := &r.cfg
	switch {
	case r.postgres() && !c.ExistingDatabase:
		name := databaseName(c.Seed)
		u, err := createDatabase(ctx, c.DatabaseURL, name)
		if err != nil {
			return fmt.Errorf("chaos: %w", err)
		}
		r.databaseURL, r.adminURL, r.createdDB = u, c.DatabaseURL, name
		r.progress.say("created database %s", name)
	case r.postgres():
		r.databaseURL = c.DatabaseURL
	default:
		r.databaseURL = filepath.Join(r.workDir, "payd.db")
	}
	if out, err := r.launcher.output(ctx, 2*time.Minute, "migrate", "--database-url", r.databaseURL); err != nil {
		return fmt.Errorf("chaos: payd migrate failed (%v): %s", err, strings.TrimSpace(out))
	}
	db, err := openPaydDB(ctx, r.databaseURL)
	if err != nil {
		return fmt.Errorf("chaos: open payd's database to check it: %w", err)
	}
	r.db = db
	if err := db.inspect(ctx); err != nil {
		return fmt.Errorf("chaos: read payd's schema: %w", err)
	}
	if _, n, err := db.notFinal(ctx); err != nil || n > 0 {
		return fmt.Errorf("chaos: the database already holds %d payments (%v): chaos needs an empty one to check", n, err)
	}
	return nil
}

// startProviders starts a provider simulator per target, each behind a
// proxy, with the faults outside every window set.
func (r *run) startProviders(ctx context.Context) error {
	var err error
	if r.paydOn() {
		if r.paydSim, r.paydLink, err = r.startProvider("provider", 0, r.has.webhooks); err != nil {
			return err
		}
	}
	if r.naiveOn() {
		if r.naiveSim, r.naiveLink, err = r.startProvider("provider-naive", 1, false); err != nil {
			return err
		}
	}
	sims, _ := r.providers()
	for _, u := range sims {
		if err := setSimFaults(ctx, r.ctl, u, r.base); err != nil {
			return err
		}
	}
	return nil
}

// providers are the simulators' URLs and the proxies in front of them,
// payd's first.
func (r *run) providers() (sims []string, links []*faultproxy.Proxy) {
	for _, s := range []struct {
		url  string
		link *faultproxy.Proxy
	}{{r.paydSim, r.paydLink}, {r.naiveSim, r.naiveLink}} {
		if s.url != "" {
			sims, links = append(sims, s.url), append(links, s.link)
		}
	}
	return sims, links
}

// startProvider starts the n-th provider simulator, logging to name.log,
// behind a proxy named name; with hooks, it sends its webhooks to payd's
// replicas through a forwarder.
func (r *run) startProvider(name string, n int, hooks bool) (string, *faultproxy.Proxy, error) {
	c := &r.cfg
	args := []string{"provider-sim", "--addr", "127.0.0.1:0", "--seed", strconv.FormatUint(derive(c.Seed, "provider", n), 10), "--hang-for", r.base.HangFor.String()}
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
		args = append(args, "--webhook-url", f.url, "--webhook-secret", r.webhookSecret())
	}
	logf, err := createLog(filepath.Join(r.workDir, name+".log"))
	if err != nil {
		return "", nil, err
	}
	sim, err := r.launcher.start(args, logf, simReady)
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

// startReplicas starts payd's replicas under the supervisor, on
// PostgreSQL through a proxy, with the failpoints of the run's faults.
func (r *run) startReplicas() error {
	c := &r.cfg
	replicaURL := r.databaseURL
	if r.postgres() {
		hp, err := hostPort(r.databaseURL)
		if err != nil {
			return err
		}
		if r.dbLink, err = faultproxy.Start("postgres", hp); err != nil {
			return err
		}
		r.proxies = append(r.proxies, r.dbLink)
		if replicaURL, err = viaProxy(r.databaseURL, r.dbLink.Addr(), poolSize); err != nil {
			return err
		}
	}
	args := []string{
		"--addr", "127.0.0.1:0", "--database-url", replicaURL, "--provider-url", "http://" + r.paydLink.Addr(),
		"--api-key", r.apiKey(), "--role", "all", "--workers", strconv.Itoa(c.Workers),
		"--lease", c.Lease.String(), "--provider-timeout", c.ProviderTimeout.String(), "--retry-base", c.RetryBase.String(),
		"--shutdown-grace", shutdownGrace.String(), "--migrate=false", "--log-format", "json",
	}
	if r.has.webhooks {
		args = append(args, "--webhook-secret", r.webhookSecret())
	}
	if r.has.maxDelay {
		args = append(args, "--provider-max-delay", c.ProviderMaxDelay.String())
	}
	if r.has.admin { // replicas share the host: each takes a free port
		args = append(args, "--admin-addr", "127.0.0.1:0")
	}
	var fps []string
	for _, k := range c.Faults {
		if p := info(k).failpoint; p != "" {
			fps = append(fps, fmt.Sprintf("%s=%g", p, c.FailpointRate))
		}
	}
	sup, err := newSupervisor(r.launcher, c.Seed, c.Replicas, args, strings.Join(fps, ","), r.workDir, shutdownGrace)
	if err != nil {
		return err
	}
	r.sup = sup
	r.progress.say("starting %d payd replica(s)…", c.Replicas)
	if err := sup.start(readyTimeout); err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	return nil
}

// startTargets makes the targets the clients send to, and finds out
// whether payd has refunds.
func (r *run) startTargets(ctx context.Context) error {
	c, rep := &r.cfg, r.rep
	if r.paydOn() {
		r.paydT = newTarget(TargetPayd, false, c.Seed, r.apiKey(), c.Concurrency, r.sup.pick)
		r.targets = append(r.targets, r.paydT)
		if c.Refunds != ModeOff {
			ok, why, err := r.probeRefunds(ctx, r.paydT)
			if err != nil {
				return err
			}
			if !ok && c.Refunds == ModeOn {
				return fmt.Errorf("chaos: --refunds on, but %s", why)
			}
			if !ok {
				rep.Skipped = append(rep.Skipped, "refunds: "+why)
			}
			r.paydT.refunds = ok
		} else {
			rep.Skipped = append(rep.Skipped, "refunds: --refunds off")
		}
		rep.Refunds = r.paydT.refunds
	}
	if r.naiveOn() {
		r.naiveT = newTarget(TargetNaive, true, c.Seed, "", c.Concurrency, func(*rand.Rand) (string, bool) { return r.naive.url, true })
		r.targets = append(r.targets, r.naiveT)
	}
	return nil
}
