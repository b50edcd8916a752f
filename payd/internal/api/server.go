// Package api is payd's HTTP API: charges, refunds, balances,
// reconciliation, the provider's webhooks, health, readiness, and the
// OpenAPI document that describes it (openapi.json, served at GET
// /openapi.json); and the operator's admin endpoints, metrics among them,
// served apart.
package api

import (
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/idemhttp"
	"github.com/idemhq/idem/payd/internal/payments"
	"github.com/idemhq/idem/payd/internal/provider"
)

// Defaults for Config.
const (
	DefaultMaxPreferWait   = 30 * time.Second
	DefaultIdempotencyWait = 10 * time.Second
)

// Config is what the API needs.
type Config struct {
	Store *payments.Store
	// Engine is on the idempotency store in Store's database, whose
	// transactions are of type Tx.
	Engine *idem.Engine
	Tx     TxType
	// Processor, if this process runs workers, lets Prefer: wait wake as soon
	// as a payment settles here; without it, waiting polls the database.
	Processor *payments.Processor
	// Registry gets the API's metrics; NewAdmin serves them.
	Registry *prometheus.Registry
	// Logger gets the access log and the handlers' errors. Wrapped in
	// LogRequestIDs, each line of a request carries its request_id.
	Logger *slog.Logger
	// Draining, if set, reports that the process is stopping: /readyz then
	// answers 503, so load balancers stop sending before the API stops.
	Draining func() bool
	// MaxPreferWait caps Prefer: wait=N. Default 30s.
	MaxPreferWait time.Duration
	// IdempotencyWait is how long a request waits for another request with
	// the same Idempotency-Key to finish before answering 409. Default 10s.
	IdempotencyWait time.Duration
	// Failpoint, if set, is called at FailpointInAccept and
	// FailpointAfterAccept. Only builds with the chaos tag set it, to kill
	// the process there.
	Failpoint func(point string)
	// WebhookSecrets verify the provider's webhooks at
	// POST /v1/provider/webhooks: the current secret, and during a rotation
	// the old one too. Without them, that route answers 404.
	WebhookSecrets [][]byte
	// Provider is asked again when a webhook disagrees with a payment's
	// final state. Required with WebhookSecrets.
	Provider provider.Provider
}

// retryStatuses are the answers payd never records under an
// Idempotency-Key: the request's writes roll back with the key, and a
// retry with the same key runs again. Each is an answer whose cause can
// change: 409 for a refusal that depends on state (a charge not succeeded
// yet), 429 and 503 for load, 500 for a failure of payd's own (a database
// error). Whatever payd records is therefore never a 409, the status the
// middleware answers a request in flight with: a client that retries a
// 409 with the same key, as both ask, is never stuck with an old answer.
var retryStatuses = []int{http.StatusConflict, http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusServiceUnavailable}

type server struct {
	store     *payments.Store
	processor *payments.Processor
	log       *slog.Logger
	maxWait   time.Duration
	idemWait  time.Duration
	metrics   metrics
	http      httpMetrics
	failpoint func(point string)
	draining  func() bool
	accounts  accountCache

	idempotent func(http.Handler) http.Handler
	webhooks   http.Handler
}

// The points of an accept where Config.Failpoint is called.
const (
	FailpointInAccept    = "in-accept"    // the payment is written, its transaction not committed
	FailpointAfterAccept = "after-accept" // the payment is committed, the client not yet answered
)

// hit calls the configured Failpoint at point, if any.
func (s *server) hit(point string) {
	if s.failpoint != nil {
		s.failpoint(point)
	}
}

// NewServer returns payd's HTTP API. Every request it answers gets an
// X-Request-Id, is counted and timed in payd_http_requests_total and
// payd_http_request_duration_seconds, and leaves one access-log line
// (TestAccessLog). /metrics is not on it: see NewAdmin.
func NewServer(cfg Config) (http.Handler, error) {
	s, err := newServer(cfg)
	if err != nil {
		return nil, err
	}
	return s.handler(), nil
}

// newServer checks cfg and builds the server it describes.
func newServer(cfg Config) (*server, error) {
	if cfg.Store == nil || cfg.Engine == nil || cfg.Tx == nil || cfg.Registry == nil {
		return nil, errors.New("api: NewServer needs a Store, an Engine, its Tx and a Registry")
	}
	s := &server{
		store:     cfg.Store,
		draining:  cfg.Draining,
		processor: cfg.Processor,
		log:       cfg.Logger,
		maxWait:   cfg.MaxPreferWait,
		idemWait:  cfg.IdempotencyWait,
		metrics:   newMetrics(cfg.Registry),
		http:      newHTTPMetrics(cfg.Registry),
		failpoint: cfg.Failpoint,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.maxWait <= 0 {
		s.maxWait = DefaultMaxPreferWait
	}
	if s.idemWait <= 0 {
		s.idemWait = DefaultIdempotencyWait
	}
	mw, err := cfg.Tx.middleware(cfg.Engine, &idemhttp.Config{
		Methods:       []string{http.MethodPost},
		RetryStatuses: retryStatuses,
		MaxWait:       s.idemWait,
		Logger:        s.log,
	})
	if err != nil {
		return nil, err
	}
	s.idempotent = noteIdempotency(mw)
	if s.webhooks, err = s.webhookHandler(cfg); err != nil {
		return nil, err
	}
	return s, nil
}

// handler serves the API: every route, behind the header limit, each
// request observed (observed) with the route it took.
func (s *server) handler() http.Handler { return s.observed(recordRoute(limitHeaders(s.mux()))) }

// failed logs err, which kept payd from serving r: an error, unless r's
// client had gone away first, which is routine (a client timeout, a retry
// on another connection) and logged at debug level.
func (s *server) failed(r *http.Request, msg string, err error) {
	level := slog.LevelError
	if r.Context().Err() != nil {
		level = slog.LevelDebug
	}
	s.log.LogAttrs(r.Context(), level, msg, slog.Any("error", err))
}
