// Package payments is payd's domain: accounts, charges and their state
// machine, kept in PostgreSQL or SQLite, and the processor that moves them
// through it by calling the provider. It reaches the database only through
// package database's DB (implemented by pgdb and sqlitedb), and knows
// nothing of HTTP: the API writes to it through Store's methods.
//
// A payment is its own job. Accepting one inserts it as pending in the same
// transaction that records the request's idempotency outcome, so there is no
// job to lose: a committed payment is due work, and an uncommitted one never
// happened. Workers claim due payments with a fenced lease and commit the
// claim before they call the provider, with a provider idempotency key fixed
// when the payment was created; they record the outcome only if their fence
// is still current. A crashed worker's lease expires and the payment is
// claimed again, and the same provider key returns the charge that already
// happened instead of making another.
package payments

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"time"
)

// States of a payment. The API shows pending, processing, succeeded and
// failed; retry_scheduled and unknown are shown as processing.
const (
	StatePending        = "pending"
	StateProcessing     = "processing"
	StateRetryScheduled = "retry_scheduled"
	StateUnknown        = "unknown"
	StateSucceeded      = "succeeded"
	StateFailed         = "failed"
)

// Payment is a charge as payd keeps it.
type Payment struct {
	ID               string
	AccountID        string
	Amount           int64
	Currency         string
	Reference        string
	Description      string
	Metadata         map[string]string
	State            string
	Fence            int64
	Attempts         int
	ProviderKey      string
	ProviderChargeID string
	FailureCode      string
	FailureMessage   string
	AmountRefunded   int64
	// Hold is the kind of the open mismatch that holds the payment, or "":
	// the provider's record under its key is not the one payd asked for.
	Hold      string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Final reports whether the payment has reached a terminal state.
func (p *Payment) Final() bool { return p.State == StateSucceeded || p.State == StateFailed }

// Status is the payment's state as the API shows it: waiting states are
// processing, never failed.
func (p *Payment) Status() string {
	switch p.State {
	case StateRetryScheduled, StateUnknown:
		return StateProcessing
	}
	return p.State
}

// Charge is the API's charge object.
type Charge struct {
	ID             string            `json:"id"`
	Object         string            `json:"object"`
	Amount         int64             `json:"amount"`
	Currency       string            `json:"currency"`
	Reference      string            `json:"reference"`
	Description    string            `json:"description,omitempty"`
	Metadata       map[string]string `json:"metadata"`
	Status         string            `json:"status"`
	FailureCode    *string           `json:"failure_code"`
	FailureMessage *string           `json:"failure_message"`
	Attempts       int               `json:"attempts"`
	AmountRefunded int64             `json:"amount_refunded"`
	CreatedAt      time.Time         `json:"created_at"`
	UpdatedAt      time.Time         `json:"updated_at"`
}

// Charge returns the API view of p.
func (p *Payment) Charge() Charge {
	c := Charge{
		ID:             p.ID,
		Object:         "charge",
		Amount:         p.Amount,
		Currency:       p.Currency,
		Reference:      p.Reference,
		Description:    p.Description,
		Metadata:       p.Metadata,
		Status:         p.Status(),
		Attempts:       p.Attempts,
		AmountRefunded: p.AmountRefunded,
		CreatedAt:      p.CreatedAt,
		UpdatedAt:      p.UpdatedAt,
	}
	if c.Metadata == nil {
		c.Metadata = map[string]string{}
	}
	if p.FailureCode != "" {
		c.FailureCode, c.FailureMessage = &p.FailureCode, &p.FailureMessage
	}
	return c
}

// NewPayment is what the API accepts.
type NewPayment struct {
	AccountID   string
	Amount      int64
	Currency    string
	Reference   string
	Description string
	Metadata    map[string]string
	// Reserve keeps the payment from every worker's poll for this long
	// after it is accepted, for the accepting process to hand it to a
	// worker of its own (Processor.Dispatch); a poll finds it after that
	// if the hand-off failed. Zero: due at once.
	Reserve time.Duration
}

// ErrNotFound is returned for a payment or account that does not exist, or
// belongs to another account.
var ErrNotFound = errors.New("payments: not found")

// newID returns an id with the given prefix and 128 random bits.
func newID(prefix string) string {
	return prefix + rand.Text()
}

func millis(t time.Time) int64 { return t.UnixMilli() }

func fromMillis(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

func encodeMetadata(m map[string]string) string {
	if len(m) == 0 {
		return "{}"
	}
	b, _ := json.Marshal(m) // a map of strings always encodes
	return string(b)
}

func decodeMetadata(s string) map[string]string {
	m := map[string]string{}
	json.Unmarshal([]byte(s), &m) // written by encodeMetadata
	return m
}
