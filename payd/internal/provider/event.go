package provider

import "encoding/json"

// Types of the events a provider sends to its webhook endpoint.
const (
	EventChargeSucceeded = "charge.succeeded" // Data is the Charge
	EventChargeFailed    = "charge.failed"    // Data is the declined Charge
	EventRefundSucceeded = "refund.succeeded" // Data is the Refund
	EventRefundFailed    = "refund.failed"    // Data is the Refund, failed after it was accepted
)

// Event is the body of a webhook delivery from a provider that speaks the
// simulator's API, signed as the webhook package verifies. Deliveries are
// at least once and in no particular order: the same ID may arrive more
// than once, and a later event before an earlier one.
type Event struct {
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	Created int64           `json:"created"` // Unix seconds
	Data    json.RawMessage `json:"data"`
}
