package idem

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"time"
)

// Defaults and limits for Config and keys.
const (
	DefaultNamespace    = "default"
	DefaultLeaseTTL     = 30 * time.Second
	MinLeaseTTL         = 10 * time.Millisecond
	DefaultRetention    = 24 * time.Hour
	DefaultMaxWait      = 10 * time.Second
	DefaultStoreTimeout = 5 * time.Second

	// MaxKeyLen is the longest key Run accepts, in bytes (Stripe's limit).
	MaxKeyLen = 255
	// MaxFingerprintLen is the longest fingerprint Run accepts, in bytes.
	// Pass a digest of the request, not the request.
	MaxFingerprintLen = 255
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
	// renews it every LeaseTTL/3 while fn runs. At least MinLeaseTTL.
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

	// Logger receives takeovers, lease losses and store errors. Keys are
	// logged as store keys (namespace and hash), never raw. Default: discard.
	Logger *slog.Logger

	// Observer, if set, is called synchronously for every Event. It must be
	// fast and safe for concurrent use; metrics adapters hang off it.
	Observer func(Event)
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
		r.Namespace = DefaultNamespace
	}
	if err := validateNamespace(r.Namespace); err != nil {
		return r, err
	}
	if r.LeaseTTL == 0 {
		r.LeaseTTL = DefaultLeaseTTL
	}
	if r.LeaseTTL < MinLeaseTTL {
		return r, fmt.Errorf("idem: LeaseTTL must be at least %s, got %s", MinLeaseTTL, r.LeaseTTL)
	}
	if r.Retention == 0 {
		r.Retention = DefaultRetention
	}
	if r.Retention < 0 {
		return r, fmt.Errorf("idem: Retention must be positive, got %s", r.Retention)
	}
	if r.MaxWait == 0 {
		r.MaxWait = DefaultMaxWait
	}
	if r.MaxWait < 0 {
		return r, fmt.Errorf("idem: MaxWait must be positive, got %s (use RunOptions.FailFast not to wait)", r.MaxWait)
	}
	if r.StoreTimeout == 0 {
		r.StoreTimeout = DefaultStoreTimeout
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
		r.Logger = slog.New(slog.DiscardHandler)
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
