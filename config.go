package idem

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/idemhq/idem/observe"
)

// Defaults and limits for Config and keys.
const (
	defaultNamespace    = "default"
	defaultLeaseTTL     = 30 * time.Second
	minLeaseTTL         = 10 * time.Millisecond
	defaultRetention    = 24 * time.Hour
	defaultMaxWait      = 10 * time.Second
	defaultStoreTimeout = 5 * time.Second

	// maxKeyLen is the longest key Run accepts, in bytes (Stripe's limit).
	maxKeyLen = 255
	// maxFingerprintLen is the longest fingerprint Run accepts, in bytes.
	maxFingerprintLen = 255
	// maxNamespaceLen keeps store keys short: namespace + "/" + 64 hex digits.
	maxNamespaceLen = 63
)

// Config tunes an Engine. A nil *Config, and every zero field, means the
// documented default.
type Config struct {
	// Namespace separates engines that share a store: the same key in two
	// namespaces names two records. 1–63 characters of [a-z0-9_.-].
	// Default "default".
	Namespace string

	// LeaseTTL is how long a claim stays live without renewal. The engine
	// renews it every LeaseTTL/3 while fn runs. At least 10ms.
	// Default 30s.
	LeaseTTL time.Duration

	// Retention is how long a completed record is kept and replayed.
	// Default 24h.
	Retention time.Duration

	// MaxWait bounds how long a call waits for another holder of the same
	// key before it returns ErrInFlight. RunOptions.MaxWait overrides it per
	// call. Default 10s.
	MaxWait time.Duration

	// StoreTimeout bounds each store call the engine makes on its own behalf:
	// lease renewals, and the complete or release after fn returns, which run
	// even when the caller's context is already done. Default 5s.
	StoreTimeout time.Duration

	// Errors maps stable codes to error values that keep their identity
	// across replay. When fn returns an error that matches one of them
	// (errors.Is), its code is recorded, and the replayed *ReplayedError
	// unwraps to that same value, so errors.Is and errors.As match after
	// replay. Codes are persisted: never reuse one for a different error.
	Errors map[string]error

	// Codec encodes the values of Do. Default JSON.
	Codec Codec

	// Logger receives takeovers (info), lease losses and store errors
	// (warn), and outcomes that were not recorded (error: ErrNotRecorded).
	// Keys are logged as store keys (namespace and hash), never raw.
	// Default: slog.Default() as New finds it, at warn and above, so a lost
	// outcome is never silent (TestDefaultLoggerWarns).
	Logger *slog.Logger

	// Observer, if set, is called synchronously for every event of a call,
	// with the caller's context, so a tracing adapter can join the caller's
	// span. It must be fast and safe for concurrent use. The OpenTelemetry
	// and Prometheus adapters are Observers.
	Observer func(context.Context, observe.Event)
}

// Codec encodes and decodes the values of Do. A nil field means JSON.
type Codec struct {
	Marshal   func(v any) ([]byte, error)
	Unmarshal func(data []byte, v any) error
}

// resolve returns a copy of c with defaults filled in, or an error naming the
// first invalid field.
func (c *Config) resolve() (Config, error) {
	var r Config
	if c != nil {
		r = *c
	}
	if r.Namespace == "" {
		r.Namespace = defaultNamespace
	}
	if err := validateNamespace(r.Namespace); err != nil {
		return r, err
	}
	if r.LeaseTTL == 0 {
		r.LeaseTTL = defaultLeaseTTL
	}
	if r.LeaseTTL < minLeaseTTL {
		return r, fmt.Errorf("idem: LeaseTTL must be at least %s, got %s", minLeaseTTL, r.LeaseTTL)
	}
	if r.Retention == 0 {
		r.Retention = defaultRetention
	}
	if r.Retention < 0 {
		return r, fmt.Errorf("idem: Retention must be positive, got %s", r.Retention)
	}
	if r.MaxWait == 0 {
		r.MaxWait = defaultMaxWait
	}
	if r.MaxWait < 0 {
		return r, fmt.Errorf("idem: MaxWait must be positive, got %s (use RunOptions.FailFast not to wait)", r.MaxWait)
	}
	if r.StoreTimeout == 0 {
		r.StoreTimeout = defaultStoreTimeout
	}
	if r.StoreTimeout < 0 {
		return r, fmt.Errorf("idem: StoreTimeout must be positive, got %s", r.StoreTimeout)
	}
	for code, err := range r.Errors {
		if code == "" || len(code) > maxCodeLen {
			return r, fmt.Errorf("idem: Errors: code %q must be 1–%d bytes", code, maxCodeLen)
		}
		if err == nil {
			return r, fmt.Errorf("idem: Errors: code %q maps to a nil error", code)
		}
	}
	if r.Codec.Marshal == nil {
		r.Codec.Marshal = json.Marshal
	}
	if r.Codec.Unmarshal == nil {
		r.Codec.Unmarshal = json.Unmarshal
	}
	if r.Logger == nil {
		r.Logger = slog.New(warnAndAbove{slog.Default().Handler()})
	}
	return r, nil
}

func validateNamespace(ns string) error {
	if len(ns) > maxNamespaceLen {
		return fmt.Errorf("idem: Namespace must be at most %d characters, got %d", maxNamespaceLen, len(ns))
	}
	for i := 0; i < len(ns); i++ {
		c := ns[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			return fmt.Errorf("idem: Namespace %q may hold only [a-z0-9_.-]", ns)
		}
	}
	return nil
}

// warnAndAbove passes on the records of its handler's at warn level and
// above: the engine's default logger, which must not be silent about lost
// outcomes nor chatty about takeovers.
type warnAndAbove struct{ slog.Handler }

func (h warnAndAbove) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && h.Handler.Enabled(ctx, l)
}

func (h warnAndAbove) WithAttrs(attrs []slog.Attr) slog.Handler {
	return warnAndAbove{h.Handler.WithAttrs(attrs)}
}

func (h warnAndAbove) WithGroup(name string) slog.Handler {
	return warnAndAbove{h.Handler.WithGroup(name)}
}
