// Package provider is payd's view of a payment provider: a small interface,
// the classification of everything a call can end in, and an HTTP client
// for providers that speak the simulator's API (internal/simulator).
//
// The classification is what keeps money safe. A call ends in one of four
// ways, and the caller must treat each differently:
//
//   - success: the provider has the charge (or refund);
//   - a *Error of KindDeclined: final, not retried, never
//     charged;
//   - KindRetryable: retry with backoff and the same idempotency key. A
//     429, a 503, a 408 or a connection refused before the request was
//     sent says the provider did not act; another 5xx may come after it did
//     (a real provider's 500 can), so payd counts such a request as one
//     that may be outstanding;
//   - KindUnknown: the request may have been acted on, or may still be (a
//     timeout or a reset after it was sent, or a 409 saying another request
//     under the key is in flight); never treat it as failed: retry with the
//     same idempotency key, or look the key up. A lookup that finds nothing
//     proves nothing while a request under the key may still be in flight.
package provider

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"time"
)

// Charge statuses at the provider.
const (
	StatusSucceeded = "succeeded"
	StatusFailed    = "failed" // declined: no money moved
)

// Charge is a charge as the provider records it. A declined request is
// recorded too, with StatusFailed, so that its key keeps answering the same
// way.
type Charge struct {
	ID             string            `json:"id"`
	IdempotencyKey string            `json:"idempotency_key"`
	Amount         int64             `json:"amount"`
	Currency       string            `json:"currency"`
	Status         string            `json:"status"`
	DeclineCode    string            `json:"decline_code,omitempty"`
	Metadata       map[string]string `json:"metadata,omitempty"`
	AmountRefunded int64             `json:"amount_refunded"`
	Created        time.Time         `json:"created"`
}

// ChargeRequest asks for a charge. The same IdempotencyKey within the
// provider's key window returns the same charge, never a second one.
type ChargeRequest struct {
	IdempotencyKey string
	Amount         int64
	Currency       string
	// Metadata reaches the provider with the charge: payd sends its payment
	// id and reference, so charges can be matched on both sides.
	Metadata map[string]string
}

// Refund is a refund as the provider records it.
type Refund struct {
	ID             string            `json:"id"`
	IdempotencyKey string            `json:"idempotency_key"`
	ChargeID       string            `json:"charge"`
	Amount         int64             `json:"amount"`
	Status         string            `json:"status"`
	Metadata       map[string]string `json:"metadata,omitempty"`
	Created        time.Time         `json:"created"`
}

// RefundRequest asks for a refund of part or all of a succeeded charge.
type RefundRequest struct {
	IdempotencyKey string
	ChargeID       string
	Amount         int64
	// Metadata reaches the provider with the refund: payd sends its refund
	// and payment ids, so refunds can be matched on both sides.
	Metadata map[string]string
}

// Provider is what payd needs from a payment provider.
type Provider interface {
	// Charge charges once per idempotency key.
	Charge(ctx context.Context, req ChargeRequest) (Charge, error)
	// ChargeByKey looks a charge up by its idempotency key; ErrNotFound if
	// the provider has none under it (which, while a request under the key
	// may be in flight, proves nothing).
	ChargeByKey(ctx context.Context, key string) (Charge, error)
	// Charges lists the charges created in [from, to), in the order they
	// were made, a page at a time as the loop asks for more. A failure
	// ends the listing with one (zero Charge, error) pair.
	Charges(ctx context.Context, from, to time.Time) iter.Seq2[Charge, error]
	// Refund refunds once per idempotency key.
	Refund(ctx context.Context, req RefundRequest) (Refund, error)
	// RefundByKey looks a refund up by its idempotency key; ErrNotFound if
	// the provider has none under it.
	RefundByKey(ctx context.Context, key string) (Refund, error)
	// Refunds lists the refunds created in [from, to), as Charges does.
	Refunds(ctx context.Context, from, to time.Time) iter.Seq2[Refund, error]
}

// ErrNotFound is returned by the lookups when the provider has no such
// charge or refund.
var ErrNotFound = errors.New("provider: not found")

// Kind classifies a failed call.
type Kind uint8

const (
	// KindDeclined: the provider refused; final, nothing charged.
	KindDeclined Kind = iota + 1
	// KindRetryable: retry with the same key; see the package doc for
	// which answers say the provider did not act.
	KindRetryable
	// KindUnknown: the provider may have acted, or may act yet; retry with
	// the same key or look it up, never assume failure.
	KindUnknown
)

func (k Kind) String() string {
	switch k {
	case KindDeclined:
		return "declined"
	case KindRetryable:
		return "retryable"
	case KindUnknown:
		return "unknown"
	}
	return "invalid"
}

// Error is a failed call, classified.
type Error struct {
	Kind Kind
	// Code is the provider's reason, such as a decline code
	// ("insufficient_funds") or "rate_limited".
	Code    string
	Message string
	// Status is the HTTP status the provider answered with, 0 if none.
	Status int
	Err    error
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("provider: %s", e.Kind)
	if e.Code != "" {
		msg += " (" + e.Code + ")"
	}
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// MayHaveActed reports whether the provider can have acted on the request
// before it answered with e: a 5xx but 503 can (Stripe, for one, records
// its 500s under the key). A 429, a 503, a 408 and a connection never
// made say it did not.
func (e *Error) MayHaveActed() bool {
	return e.Status >= 500 && e.Status != http.StatusServiceUnavailable
}

// KindOf returns the kind of a call's error: a *Error's kind, KindUnknown
// for any other error (when in doubt, the provider may have acted), and 0
// for nil.
func KindOf(err error) Kind {
	if err == nil {
		return 0
	}
	if pe, ok := errors.AsType[*Error](err); ok {
		return pe.Kind
	}
	return KindUnknown
}

// Collect reads a listing (Provider.Charges or Refunds) to its end.
func Collect[T any](list iter.Seq2[T, error]) ([]T, error) {
	out := []T{}
	for v, err := range list {
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}
