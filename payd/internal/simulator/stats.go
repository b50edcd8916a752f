package simulator

import "sync/atomic"

// Stats counts what the simulator has done, for tests and chaos reports.
// Charges and refunds are counted by Charges and Refunds.
type Stats struct {
	Requests          int64 `json:"requests"`            // API requests received
	Errors            int64 `json:"errors"`              // answered 500 by ErrorRate
	RateLimited       int64 `json:"rate_limited"`        // answered 429 by RateLimitRate
	Drops             int64 `json:"drops"`               // acted on, then dropped unanswered
	Hangs             int64 `json:"hangs"`               // acted on, then held HangFor
	LateExecutions    int64 `json:"late_executions"`     // deferred by LateRate and since executed, refused refunds included
	InFlightConflicts int64 `json:"in_flight_conflicts"` // answered 409 idempotency_key_in_use
	OtherAmounts      int64 `json:"other_amounts"`       // charges and refunds made for another amount by OtherAmountRate

	WebhookAttempts   int64 `json:"webhook_attempts"`   // deliveries tried
	WebhooksDelivered int64 `json:"webhooks_delivered"` // event copies answered 2xx
	WebhooksAbandoned int64 `json:"webhooks_abandoned"` // copies given up after WebhookMaxAttempts
}

type counters struct {
	requests, errors, rateLimited, drops, hangs     atomic.Int64
	lateExecutions, inFlightConflicts, otherAmounts atomic.Int64
	webhookAttempts, webhooksDelivered, abandoned   atomic.Int64
}

// Stats returns the counts so far.
func (s *Sim) Stats() Stats {
	c := &s.stats
	return Stats{
		Requests:          c.requests.Load(),
		Errors:            c.errors.Load(),
		RateLimited:       c.rateLimited.Load(),
		Drops:             c.drops.Load(),
		Hangs:             c.hangs.Load(),
		LateExecutions:    c.lateExecutions.Load(),
		InFlightConflicts: c.inFlightConflicts.Load(),
		OtherAmounts:      c.otherAmounts.Load(),
		WebhookAttempts:   c.webhookAttempts.Load(),
		WebhooksDelivered: c.webhooksDelivered.Load(),
		WebhooksAbandoned: c.abandoned.Load(),
	}
}
