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

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel/trace"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/payd/internal/api"
	"github.com/idemhq/idem/payd/internal/payments"
	"github.com/idemhq/idem/payd/internal/provider"
	"github.com/idemhq/idem/payd/internal/simulator"
)

// serveConfig is what payd serve is told.
type serveConfig struct {
	addr, databaseURL, apiKey, providerURL, simAddr, role, logFormat   string
	webhookSecret                                                      string
	workers                                                            int
	lease, shutdownGrace, providerTimeout, retryBase, providerMaxDelay time.Duration
	reconcileInterval, reconcileWindow                                 time.Duration
	reconcileStaleAfter                                                int
	migrate                                                            bool
	crash                                                              crashConfig
	http                                                               httpConfig
}

func (c *serveConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.addr, "addr", "127.0.0.1:8080", "where the API listens")
	fs.StringVar(&c.databaseURL, "database-url", "payd.db", "a SQLite file path, or a postgres:// URL")
	fs.StringVar(&c.apiKey, "api-key", "", "the dev account's API key (default: a new random key, printed at start)")
	fs.StringVar(&c.providerURL, "provider-url", "", "the provider's base URL (default: start the built-in simulator)")
	fs.StringVar(&c.simAddr, "sim-addr", "127.0.0.1:8081", "where the built-in simulator serves its own API, when --provider-url is empty")
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
	return c.http.check()
}

func (c *serveConfig) runsAPI() bool    { return c.role != "worker" }
func (c *serveConfig) runsWorker() bool { return c.role != "api" }

func newLogger(format string, stderr io.Writer) *slog.Logger {
	if format == "text" || format == "auto" && isTerminal(stderr) {
		return slog.New(slog.NewTextHandler(stderr, nil))
	}
	return slog.New(slog.NewJSONHandler(stderr, nil))
}

// parseServe reads payd serve's flags, from the command line and the
// environment, and checks them.
func parseServe(args []string, getenv func(string) string, stdout, stderr io.Writer) (serveConfig, error) {
	var cfg serveConfig
	fs := flag.NewFlagSet("payd serve", flag.ContinueOnError)
	cfg.flags(fs)
	if err := parse(fs, "Run the API, the workers, or both, on SQLite or PostgreSQL.\n\n"+tracingHelp, args, getenv, stdout, stderr); err != nil {
		return cfg, err
	}
	return cfg, cfg.check()
}

func runServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseServe(args, getenv, stdout, stderr)
	if errors.Is(err, errHelp) {
		return nil
	}
	if err != nil {
		return err
	}
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
	apiKey, err := ensureDevAccount(ctx, st.payments, cfg.apiKey)
	if err != nil {
		return err
	}

	var ln net.Listener
	if cfg.runsAPI() {
		if ln, err = net.Listen("tcp", cfg.addr); err != nil {
			return fmt.Errorf("listen on %s (set --addr): %w", cfg.addr, err)
		}
		defer ln.Close()
	}
	secrets := webhookSecrets(cfg.webhookSecret)
	providerURL := cfg.providerURL
	if providerURL == "" {
		sim, withSecret, err := startBuiltInSimulator(ctx, cfg.simAddr, ln, secrets, log)
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

	engine, err := newEngine(st, log, tr)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	var proc *payments.Processor
	if cfg.runsWorker() {
		proc = payments.NewProcessor(st.payments, prov, cfg.processorConfig(crash.hit, log, payments.NewMetrics(reg, st.payments), tr.provider))
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
		front.serve(ln)
		printBanner(stdout, ln.Addr().String(), st.payments, providerURL, cfg, apiKey)
	} else {
		fmt.Fprintf(stdout, "payd worker running (%d workers, %s, provider %s)\n", cfg.workers, st.payments.Dialect(), providerURL)
	}
	log.Info("payd: started", slog.String("role", cfg.role), slog.String("database", st.payments.Dialect()), slog.String("provider", providerURL))

	var failed error
	select {
	case <-ctx.Done():
	case failed = <-front.failures():
		log.Error("payd: stopping: the API server failed", slog.Any("error", failed))
	}
	return errors.Join(failed, shutdown(cfg, front, proc, log))
}

// newEngine is payd's idempotency engine on st, its events reported to
// engineObserver's observers.
func newEngine(st *storage, log *slog.Logger, tr *tracing) (*idem.Engine, error) {
	observer, err := engineObserver(tr, st.payments.Dialect())
	if err != nil {
		return nil, err
	}
	return idem.New(st.idem, &idem.Config{Namespace: "payd", Logger: log, Observer: observer})
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

// ensureDevAccount writes the dev account, reached with apiKey or, if it
// is "", with a new random key, and returns the key.
// ensureDevAccount makes the dev account's key apiKey, or a new random one
// when apiKey is empty, and returns the key to print: the new one, or ""
// for a key the operator gave, which payd never prints.
func ensureDevAccount(ctx context.Context, store *payments.Store, apiKey string) (string, error) {
	shown := ""
	if apiKey == "" {
		apiKey = "sk_dev_" + strings.ToLower(crand.Text())
		shown = apiKey
	}
	return shown, store.EnsureAccount(ctx, "acct_dev", "dev", apiKey)
}

// startBuiltInSimulator starts the simulator that stands in for the
// provider when --provider-url is empty. With the API listening on ln, it
// sends its webhooks there, signed with the first of secrets, or with a new
// random secret if there are none; it returns the secrets the API is to
// verify them with.
func startBuiltInSimulator(ctx context.Context, addr string, ln net.Listener, secrets [][]byte, log *slog.Logger) (*embeddedSim, [][]byte, error) {
	simCfg := simulator.Config{Logger: log}
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
// hook, the logger, the metrics and the traces they report to.
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

// shutdown fails readiness, then takes no new requests or claims and
// gives in-flight work grace to finish; front and proc may be nil. It
// returns the API server's failure to stop, which sets the exit code.
func shutdown(cfg serveConfig, front *frontend, proc *payments.Processor, log *slog.Logger) error {
	log.Info("payd: stopping: no new requests or claims; in-flight work finishes", slog.String("grace", cfg.shutdownGrace.String()))
	stopCtx, cancel := context.WithTimeout(context.Background(), cfg.http.drainDelay+cfg.shutdownGrace)
	defer cancel()
	err := front.stop(stopCtx, cfg.http.drainDelay, log)
	if err != nil {
		log.Error("payd: stopping the API cut requests still in flight", slog.Any("error", err))
	}
	if proc != nil {
		if err := proc.Stop(stopCtx); err != nil {
			log.Warn("payd: in-flight work did not finish in time; its leases will expire and another worker completes it", slog.Any("error", err))
		}
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

func printBanner(w io.Writer, addr string, store *payments.Store, providerURL string, cfg serveConfig, apiKey string) {
	where := store.Dialect()
	if where == "sqlite" {
		where = "SQLite " + cfg.databaseURL
	} else {
		where = "PostgreSQL"
	}
	fmt.Fprintf(w, "payd is ready on http://%s (%s, provider %s, role %s)\n", addr, where, providerURL, cfg.role)
	bearer := apiKey
	if apiKey == "" { // the operator's own key, never printed
		bearer = "$PAYD_API_KEY"
		fmt.Fprint(w, "dev API key: the one given with --api-key or PAYD_API_KEY\n\n")
	} else {
		fmt.Fprintf(w, "dev API key: %s\n\n", apiKey)
	}
	fmt.Fprintf(w, "Try it:\n  curl -s http://%s/v1/charges -H \"Authorization: Bearer %s\" -H 'Idempotency-Key: order-123-try-1' -H 'Prefer: wait=5' -d '{\"amount\":1999,\"currency\":\"usd\",\"reference\":\"order_123\"}'\n\n", addr, bearer)
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
