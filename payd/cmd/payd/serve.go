package main

import (
	"context"
	crand "crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/idemhq/idem/payd/internal/api"
	"github.com/idemhq/idem/payd/internal/payments"
	"github.com/idemhq/idem/payd/internal/provider"
	"github.com/idemhq/idem/payd/internal/simulator"
)

// serveConfig is what payd serve is told.
type serveConfig struct {
	addr, databaseURL, apiKey, providerURL, simAddr, role, logFormat   string
	webhookSecret, simState                                            string
	workers                                                            int
	lease, shutdownGrace, providerTimeout, retryBase, providerMaxDelay time.Duration
	reconcileInterval, reconcileWindow                                 time.Duration
	reconcileStaleAfter                                                int
	migrate                                                            bool
	crash                                                              crashConfig
	http                                                               httpConfig
	admin                                                              adminConfig
}

func (c *serveConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.addr, "addr", "127.0.0.1:8080", "where the API listens")
	fs.StringVar(&c.databaseURL, "database-url", "payd.db", "a SQLite file path, or a postgres:// URL")
	fs.StringVar(&c.apiKey, "api-key", "", "an API key of the dev account, acct_dev, added at start if it is not one yet and never printed; prefer PAYD_API_KEY, as a flag shows in the process list (default on SQLite: the key kept in <database>.dev-key, made on the first start and printed at each; accounts and keys are made with payd accounts and payd keys)")
	fs.StringVar(&c.providerURL, "provider-url", "", "the provider's base URL (default: start the built-in simulator)")
	fs.StringVar(&c.simAddr, "sim-addr", "127.0.0.1:8081", "where the built-in simulator serves its own API, when --provider-url is empty")
	fs.StringVar(&c.simState, "sim-state", "", "the file where the built-in simulator keeps its charges, refunds and ids, so they survive a restart as payd's database does (default: the SQLite file's path plus .provider; payd.provider in the working directory with PostgreSQL)")
	fs.StringVar(&c.role, "role", "all", "api, worker, or all")
	fs.IntVar(&c.workers, "workers", payments.DefaultWorkers, "payments one process works on at once")
	fs.DurationVar(&c.lease, "lease", payments.DefaultLease, "how long a worker's claim on a payment lasts; longer than --provider-timeout")
	fs.DurationVar(&c.providerTimeout, "provider-timeout", 10*time.Second, "how long one provider call may take")
	fs.DurationVar(&c.retryBase, "retry-base", payments.DefaultRetryBase, "the first backoff after a retryable provider error; it doubles, with full jitter")
	fs.DurationVar(&c.providerMaxDelay, "provider-max-delay", payments.DefaultMaxProviderDelay, "the longest the provider may take to act on a request it received: a charge or refund the provider has no record of is failed only this long after the last request that may have reached it")
	fs.DurationVar(&c.shutdownGrace, "shutdown-grace", 20*time.Second, "on SIGTERM, how long in-flight provider calls may take to finish")
	fs.StringVar(&c.webhookSecret, "webhook-secret", "", "the secret the provider signs its webhooks with, at POST /v1/provider/webhooks; during a rotation, new,old (default with the built-in simulator: a new random secret)")
	fs.DurationVar(&c.reconcileInterval, "reconcile-interval", payments.DefaultReconcileInterval, "time between reconciliation runs against the provider (0: none)")
	fs.DurationVar(&c.reconcileWindow, "reconcile-window", payments.DefaultReconcileWindow, "how far back each reconciliation run looks")
	fs.IntVar(&c.reconcileStaleAfter, "reconcile-stale-after", payments.DefaultReconcileStaleAfter, "reconciliation intervals without a run that succeeded before payd logs an error and sets payd_reconciliation_stale")
	fs.BoolVar(&c.migrate, "migrate", true, "apply the database schema at start (use payd migrate and --migrate=false to do it once, ahead of many replicas)")
	fs.StringVar(&c.logFormat, "log-format", "auto", "json, text, or auto: json unless stderr is a terminal")
	c.http.flags(fs)
	c.admin.flags(fs)
	c.crash.flags(fs)
}

func (c *serveConfig) check() error {
	switch c.role {
	case "all", "api", "worker":
	default:
		return fmt.Errorf("--role must be api, worker or all, not %q", c.role)
	}
	if c.workers < 1 {
		return fmt.Errorf("--workers must be at least 1, not %d", c.workers)
	}
	if c.role != "all" && c.providerURL == "" {
		return fmt.Errorf("--role %s needs --provider-url: only --role all starts the built-in simulator, and processes that do not share one provider charge in different places", c.role)
	}
	if c.reconcileInterval < 0 || c.reconcileWindow <= 0 || c.reconcileStaleAfter < 1 {
		return fmt.Errorf("--reconcile-interval must not be negative, --reconcile-window must be positive and --reconcile-stale-after at least 1")
	}
	if c.providerMaxDelay <= 0 {
		return fmt.Errorf("--provider-max-delay must be positive, not %s", c.providerMaxDelay)
	}
	if c.lease <= c.providerTimeout {
		return fmt.Errorf("--lease (%s) must outlast --provider-timeout (%s): a worker must not lose its claim while the provider is still answering", c.lease, c.providerTimeout)
	}
	switch c.logFormat {
	case "auto", "json", "text":
	default:
		return fmt.Errorf("--log-format must be json, text or auto, not %q", c.logFormat)
	}
	if err := c.admin.check(); err != nil {
		return err
	}
	return c.http.check()
}

func (c *serveConfig) runsAPI() bool    { return c.role != "worker" }
func (c *serveConfig) runsWorker() bool { return c.role != "api" }

// newLogger is payd's logger: JSON, or text on a terminal; durations as
// Go duration strings ("1.5s") rather than JSON's integer nanoseconds
// (TestLoggedDurationsAreReadable); and each line logged in an API
// request's context with that request's id.
func newLogger(format string, stderr io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{ReplaceAttr: readableDuration}
	var h slog.Handler = slog.NewJSONHandler(stderr, opts)
	if format == "text" || format == "auto" && isTerminal(stderr) {
		h = slog.NewTextHandler(stderr, opts)
	}
	return slog.New(api.LogRequestIDs(h))
}

// readableDuration writes a duration attribute as its String.
func readableDuration(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

// parseServe reads payd serve's flags, and the environment for those not
// given, and checks them; it returns nil, nil once --help is printed.
func parseServe(args []string, getenv func(string) string, stdout, stderr io.Writer) (*serveConfig, error) {
	var cfg serveConfig
	fs := flag.NewFlagSet("payd serve", flag.ContinueOnError)
	cfg.flags(fs)
	if err := parse(fs, "Run the API, the workers, or both, on SQLite or PostgreSQL.\n\n"+tracingHelp, args, getenv, stdout, stderr); err != nil {
		if errors.Is(err, errHelp) {
			return nil, nil
		}
		return nil, err
	}
	return &cfg, cfg.check()
}

func runServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	c, err := parseServe(args, getenv, stdout, stderr)
	if c == nil || err != nil {
		return err
	}
	cfg := *c
	log := newLogger(cfg.logFormat, stderr)
	tr, err := newTracing(ctx, getenv, stdout, log)
	if err != nil {
		return err
	}
	defer tr.shutdown(log)
	crash, err := cfg.crash.arm()
	if err != nil {
		return err
	}
	st, err := openReady(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer st.close()
	dev, err := ensureDevKey(ctx, st.payments, cfg, log)
	if err != nil {
		return err
	}
	ln, adminLn, err := cfg.listen(crash)
	if err != nil {
		return err
	}
	defer closeListeners(ln, adminLn)
	secrets := webhookSecrets(cfg.webhookSecret)
	providerURL := cfg.providerURL
	if providerURL == "" {
		sim, withSecret, err := startBuiltInSimulator(ctx, cfg.simAddr, simStateFile(cfg), ln, secrets, log)
		if err != nil {
			return err
		}
		defer sim.stop()
		providerURL, secrets = sim.url, withSecret
	}
	prov, err := provider.NewClient(providerURL, &provider.ClientConfig{
		Timeout:          cfg.providerTimeout,
		OnRequestWritten: crash.afterSend,
		TracerProvider:   tr.provider,
	})
	if err != nil {
		return err
	}

	reg := newRegistry()
	engine, err := newEngine(st, log, reg, tr)
	if err != nil {
		return err
	}
	metrics := payments.NewMetrics(reg, st.payments) // every role settles: workers, webhooks, reconciliation
	var proc *payments.Processor
	if cfg.runsWorker() {
		proc = payments.NewProcessor(st.payments, prov, cfg.processorConfig(crash.hit, log, metrics, tr.provider))
		proc.Start(ctx)
	}
	if cfg.reconcileInterval > 0 {
		rec := payments.NewReconciler(st.payments, prov, &payments.ReconcilerConfig{Interval: cfg.reconcileInterval, Window: cfg.reconcileWindow,
			StaleAfter: cfg.reconcileStaleAfter, Logger: log, Registerer: reg, TracerProvider: tr.provider})
		rec.Start(ctx)
		defer rec.Stop()
	}

	var front *frontend
	if cfg.runsAPI() {
		front, err = newFrontend(cfg.http, func(draining func() bool) (http.Handler, error) {
			h, err := api.NewServer(api.Config{Store: st.payments, Engine: engine, Tx: st.tx, Processor: proc, Registry: reg, Logger: log,
				Failpoint: crash.hit, WebhookSecrets: secrets, Provider: prov, Draining: draining})
			return tr.handler(h), err
		})
		if err != nil {
			return err
		}
	}
	admin, err := startAdmin(adminLn, cfg.admin, cfg.http, reg, st.payments, log)
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, admin.banner(cfg.admin))
	if front != nil {
		front.serve(ln)
		printBanner(stdout, ln.Addr().String(), st.payments, providerURL, cfg, dev)
	} else {
		fmt.Fprintf(stdout, "payd worker running (%d workers, %s, provider %s)\n", cfg.workers, st.payments.Dialect(), providerURL)
	}
	log.Info("payd: started", slog.String("role", cfg.role), slog.String("database", st.payments.Dialect()), slog.String("provider", providerURL))
	failed := awaitStop(ctx, front, admin, log)
	return errors.Join(failed, shutdown(cfg, front, proc, admin, log))
}

// listen opens the API's address, in a role that serves the API, wrapped
// by the crash hooks; and the admin address, if there is one.
func (c *serveConfig) listen(crash crashHooks) (apiLn, adminLn net.Listener, err error) {
	if c.runsAPI() {
		if apiLn, err = net.Listen("tcp", c.addr); err != nil {
			return nil, nil, fmt.Errorf("listen on %s (set --addr): %w", c.addr, err)
		}
	}
	if adminLn, err = c.admin.listen(); err != nil {
		closeListeners(apiLn)
		return nil, nil, err
	}
	return crash.wrapListener(apiLn), adminLn, nil
}

// closeListeners closes those of lns that are open.
func closeListeners(lns ...net.Listener) {
	for _, ln := range lns {
		if ln != nil {
			ln.Close()
		}
	}
}

// awaitStop waits until ctx ends or a server fails, and returns the
// failure, which sets the exit code (TestServeErrorExits).
func awaitStop(ctx context.Context, front *frontend, admin *adminServer, log *slog.Logger) error {
	select {
	case <-ctx.Done():
		return nil
	case err := <-front.failures():
		log.Error("payd: stopping: the API server failed", slog.Any("error", err))
		return err
	case err := <-admin.failures():
		log.Error("payd: stopping: the admin server failed", slog.Any("error", err))
		return err
	}
}

// openReady opens payd's database, migrates it if --migrate says so, and
// checks that it is ready.
func openReady(ctx context.Context, cfg serveConfig, log *slog.Logger) (*storage, error) {
	st, err := openStorage(ctx, cfg.databaseURL, log)
	if err != nil {
		return nil, err
	}
	if cfg.migrate {
		if err := st.migrate(ctx); err != nil {
			st.close()
			return nil, err
		}
	}
	if err := st.payments.Ready(ctx); err != nil {
		st.close()
		return nil, fmt.Errorf("database not ready: %w", err)
	}
	return st, nil
}

// startBuiltInSimulator starts the simulator that stands in for the
// provider when --provider-url is empty. With the API listening on ln, it
// sends its webhooks there, signed with the first of secrets, or with a new
// random secret if there are none; it returns the secrets the API is to
// verify them with. The simulator keeps its state in stateFile.
func startBuiltInSimulator(ctx context.Context, addr, stateFile string, ln net.Listener, secrets [][]byte, log *slog.Logger) (*embeddedSim, [][]byte, error) {
	simCfg := simulator.Config{Logger: log, StateFile: stateFile}
	if ln != nil {
		if len(secrets) == 0 {
			secrets = [][]byte{[]byte(crand.Text())}
		}
		simCfg.WebhookURL = "http://" + ln.Addr().String() + "/v1/provider/webhooks"
		simCfg.WebhookSecret = string(secrets[0])
	}
	sim, err := startSimulator(ctx, addr, simCfg)
	return sim, secrets, err
}

// processorConfig is the workers' configuration, with the failpoint
// hook, the logger and the metrics they report to.
func (c *serveConfig) processorConfig(failpoint func(point string), log *slog.Logger, metrics *payments.Metrics, tp trace.TracerProvider) *payments.ProcessorConfig {
	return &payments.ProcessorConfig{
		Workers:          c.workers,
		Lease:            c.lease,
		RetryBase:        c.retryBase,
		MaxProviderDelay: c.providerMaxDelay,
		Failpoint:        failpoint,
		Logger:           log,
		Metrics:          metrics,
		TracerProvider:   tp,
	}
}

// adminStopGrace is how long a scrape in flight may take once payd stops.
const adminStopGrace = 5 * time.Second

// shutdown fails readiness, then takes no new requests or claims and
// gives in-flight work grace to finish; then it stops the admin
// endpoints, which report on that work until it ends. front, proc and
// admin may be nil. It returns a server's failure to stop, which sets the
// exit code.
func shutdown(cfg serveConfig, front *frontend, proc *payments.Processor, admin *adminServer, log *slog.Logger) error {
	log.Info("payd: stopping: no new requests or claims; in-flight work finishes", slog.String("grace", cfg.shutdownGrace.String()))
	stopCtx, cancel := context.WithTimeout(context.Background(), cfg.http.drainDelay+cfg.shutdownGrace)
	defer cancel()
	err := front.stop(stopCtx, cfg.http.drainDelay, log)
	if err != nil {
		// The chaos harness knows a stop that cut requests by this line.
		log.Error("payd: stopping the API cut requests still in flight", slog.Any("error", err))
	}
	if proc != nil {
		if err := proc.Stop(stopCtx); err != nil {
			log.Warn("payd: in-flight work did not finish in time; its leases will expire and another worker completes it", slog.Any("error", err))
		}
	}
	adminCtx, cancelAdmin := context.WithTimeout(context.Background(), adminStopGrace)
	defer cancelAdmin()
	if aerr := admin.stop(adminCtx); aerr != nil {
		log.Error("payd: stopping the admin endpoints cut a request still in flight", slog.Any("error", aerr))
		err = errors.Join(err, aerr)
	}
	return err
}

// webhookSecrets splits --webhook-secret: the current secret, then any
// old one still accepted during a rotation.
func webhookSecrets(flag string) [][]byte {
	var out [][]byte
	for s := range strings.SplitSeq(flag, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, []byte(s))
		}
	}
	return out
}

func printBanner(w io.Writer, addr string, store *payments.Store, providerURL string, cfg serveConfig, dev devKey) {
	where := store.Dialect()
	if where == "sqlite" {
		where = "SQLite " + cfg.databaseURL
	} else {
		where = "PostgreSQL"
	}
	fmt.Fprintf(w, "payd is ready on http://%s (%s, provider %s, role %s)\n", addr, where, providerURL, cfg.role)
	bearer := dev.shown
	if dev.shown == "" {
		bearer = "$PAYD_API_KEY"
		fmt.Fprintf(w, "%s\n\n", dev.note)
	} else {
		fmt.Fprintf(w, "dev API key: %s\n\n", dev.shown)
	}
	fmt.Fprintf(w, "Try it:\n  curl -s http://%s/v1/charges -H \"Authorization: Bearer %s\" -H 'Content-Type: application/json' -H 'Idempotency-Key: order-123-try-1' -H 'Prefer: wait=5' -d '{\"amount\":1999,\"currency\":\"usd\",\"reference\":\"order_123\"}'\n\n", addr, bearer)
}

func runMigrate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("payd migrate", flag.ContinueOnError)
	databaseURL := fs.String("database-url", "payd.db", "a SQLite file path, or a postgres:// URL")
	if err := parse(fs, "Apply payd's database schema, including the idempotency store's, and exit.", args, getenv, stdout, stderr); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	st, err := openStorage(ctx, *databaseURL, nil)
	if err != nil {
		return err
	}
	defer st.close()
	if err := st.migrate(ctx); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "payd: %s schema is up to date\n", st.payments.Dialect())
	return nil
}
