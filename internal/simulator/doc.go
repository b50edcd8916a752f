// Package simulator is a payment provider simulator: payd's provider when
// none is configured, and the provider its tests and chaos runs break on
// demand. It honours idempotency keys the way a real provider does, keeps
// every charge and refund in memory for the oracles to count, and injects
// the faults that make payment systems lose money: latency, 500s, 429s,
// declines, a charge whose response is lost, a response that comes too
// late, and webhooks duplicated, delayed and out of order.
//
// Use it in process, with Handler behind any server (httptest included),
// or as its own process with Serve or ListenAndServe. Config's fields map
// one to one onto flags (RegisterFlags).
//
// # API
//
// JSON in and out. Errors are {"error":{"code":…,"message":…}}.
//
//	POST /charges          Idempotency-Key: <key>
//	                       {"amount":1999,"currency":"usd","metadata":{"payment_id":"…"}}
//	GET  /charges/{id}
//	GET  /charges?idempotency_key=<key>
//	GET  /charges[?created_gte=<RFC 3339>][&created_lt=<RFC 3339>]   {"data":[…]}
//	POST /refunds          Idempotency-Key: <key>   {"charge":"ch_…","amount":500}
//	GET  /refunds?idempotency_key=<key>
//	GET  /refunds[?created_gte=…][&created_lt=…]                    {"data":[…]}
//	GET  /_faults, POST /_faults   the faults in force; a POST replaces them all
//	GET  /_stats                   counts of requests, injected faults, webhooks
//
// POST /charges answers 200 with the charge (a provider.Charge), or 402
// with it if it was declined: status "failed" and a decline_code. An amount
// ending in 02 is declined card_declined, one ending in 03
// insufficient_funds, and any other with probability DeclineRate
// generic_decline. A declined charge is recorded, so its key keeps
// answering 402 with it.
//
// An idempotency key returns its first result, status and all, for
// KeyWindow (24h): the same charge (or refund), with Idempotent-Replayed:
// true, however many requests carry it at once. The same key with another
// amount or currency (or, for a refund, another charge or amount) is
// refused 400 idempotency_mismatch. A request refused before it is acted
// on binds nothing to its key. Charge and refund keys are separate.
//
// POST /refunds refunds part or all of a succeeded charge, never more than
// is left of it: 404 charge_not_found, 400 charge_not_succeeded, 400
// amount_too_large.
//
// Other refusals are 400 idempotency_key_required and 400 invalid_request
// (malformed JSON, unknown fields, a non-positive amount, a currency that
// is not three letters, a bad time). Lookups answer 404 not_found; an
// unknown route 404 no_route. After Close, the API answers 503.
//
// # Faults
//
// Each API request draws its faults on arrival (see Faults), reads its
// body, waits out its latency, and then, in this order of precedence:
// answers 500 or 429 without acting; or acts and closes the connection
// unanswered (hijacked); or acts and answers HangFor later; or acts and
// answers. Lookups draw the same faults as POSTs; GET /_faults,
// POST /_faults and GET /_stats draw none, so a harness can always clear
// the faults and count.
//
// Every random decision comes from one math/rand/v2 source seeded by
// Config.Seed, with a fixed number of draws per request and per event, so
// the same seed and the same sequence of requests give the same faults and
// decisions. Concurrent requests draw in the order they arrive. Ids are
// sequential (ch_000001, re_000001, evt_000001) and unique within one
// simulator.
//
// # Webhooks
//
// With a WebhookURL, every charge made and refund made sends an event:
//
//	{"id":"evt_…","type":"charge.succeeded","created":<unix>,"data":{…the charge…}}
//
// of type charge.succeeded, charge.failed or refund.succeeded (a
// provider.Event), signed in the Webhook-Signature header by webhook.Sign
// with WebhookSecret at the time of each attempt. One goroutine delivers
// them one at a time, in the order they happened unless the webhook faults
// say otherwise, and tries a copy not answered 2xx again with backoff, up
// to WebhookMaxAttempts. Close stops it.
package simulator
