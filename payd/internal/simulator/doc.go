// Package simulator is a payment provider simulator: payd's provider when
// none is configured, and the provider its tests and chaos runs break on
// demand. It honours idempotency keys the way a real provider does, keeps
// every charge and refund for the oracles to count (in memory, and in a
// state file if Config.StateFile names one), and injects
// the faults that make payment systems lose money: latency, 500s, 429s,
// declines, a charge whose response is lost, a response that comes too
// late, a request executed long after its response was lost while its key
// looks unknown, a key busy with an earlier request, a charge made for
// another amount than asked, and webhooks duplicated, delayed and out of
// order.
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
//	GET  /charges[?created_gte=<RFC 3339>][&created_lt=<RFC 3339>][&limit=<n>][&starting_after=<id>]
//	                       {"data":[…],"has_more":true|false}
//	POST /refunds          Idempotency-Key: <key>
//	                       {"charge":"ch_…","amount":500,"metadata":{"refund_id":"…"}}
//	GET  /refunds?idempotency_key=<key>
//	GET  /refunds[?created_gte=…][&created_lt=…][&limit=…][&starting_after=<id>]   as GET /charges
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
// true, however many requests carry it at once. A later request is
// compared with what the first one asked for, not with what was made: the
// same amount and currency (for a refund, the same charge and amount)
// replay the result, even one made for another amount (OtherAmountRate);
// others are refused 400 idempotency_mismatch. A request refused before it
// is acted on binds nothing to its key. Charge and refund keys are
// separate. A POST whose key is busy (see Faults) is answered 409
// idempotency_key_in_use, having done nothing.
//
// POST /refunds refunds part or all of a succeeded charge, never more than
// is left of it: 404 charge_not_found, 400 charge_not_succeeded, 400
// amount_too_large. A refund's metadata, string values like a charge's, is
// kept and returned with it everywhere, webhooks included.
//
// The listings return the charges (or refunds) created in [created_gte,
// created_lt) in the order they were made, which is also their created
// order, limit at a time (1 to 1000, default 100), from the first after
// the one with id starting_after; has_more says whether more follow. A
// listing is read a page at a time: ask for the next page with
// starting_after the last id of this one.
//
// Other refusals are 400 idempotency_key_required and 400 invalid_request
// (malformed JSON, unknown fields, a non-positive amount, a currency that
// is not three letters, a bad time, a bad limit, a starting_after that is
// no id). Lookups answer 404 not_found; an unknown route 404 no_route.
// After Close, the API answers 503.
//
// # Faults
//
// Each API request draws its faults on arrival (see Faults), reads its
// body, waits out its latency, and then, in this order of precedence:
//
//  1. answers 500 or 429 without acting;
//  2. a POST whose key is pending a late execution, or (by InFlightRate)
//     is in flight with an earlier request not yet answered or dropped,
//     is answered 409 idempotency_key_in_use without acting;
//  3. a new charge or refund (by LateRate) is validated, refused at once
//     if it would be, and otherwise deferred: executed LateMin to LateMax
//     later as if it arrived then (a refund checked against its charge as
//     it stands then; the decline rules and the other amount as drawn on
//     arrival), its webhook sent then. Meanwhile its own connection is
//     held and then closed unanswered, the lookup of its key answers 404,
//     and the listings leave it out;
//  4. it acts, making a new charge or refund for another amount by
//     OtherAmountRate, and then closes the connection unanswered
//     (hijacked), or answers HangFor later, or answers.
//
// Lookups draw the same faults as POSTs, though only 500, 429, drop and
// hang touch them; GET /_faults, POST /_faults and GET /_stats draw none,
// so a harness can always clear the faults and count. Close abandons the
// late executions still pending: they never execute.
//
// Every random decision comes from one math/rand/v2 source seeded by
// Config.Seed, with a fixed number of draws per request (ten, whatever the
// faults) and per event, so the same seed and the same sequence of
// requests give the same faults and decisions. A late execution uses the
// draws of the request it defers; its event draws when it executes.
// Concurrent requests draw in the order they arrive. Ids are sequential
// (ch_000001, re_000001, evt_000001) and unique within one simulator, and,
// with a StateFile, across every simulator that opens the file.
//
// # State
//
// With a StateFile, a simulator is a provider that outlives its process.
// Each charge or refund it makes is appended to the file, one JSON line,
// and synced before the request that made it is answered or its event
// queued, and before a late execution counts as done; a new simulator
// opened on the file loads them all: the charges and refunds with what is
// left of each charge, what each key was asked for (so replays and
// idempotency_mismatch answer as before, within KeyWindow of the
// original), and the id and event counters, which carry on above the
// highest loaded (TestStateSurvivesAReopen, TestStateKeepsEventIDsUnique).
// A change the file cannot take is refused: 503, nothing done; or 500 if
// the file may keep part of it, after which the simulator takes no further
// change until it is opened again (TestStateWriteFailureRefusesTheChange).
//
// A crash, SIGKILL included, loses nothing that was answered
// (TestStateSurvivesACrash). The record being written when it struck was
// never answered and sent no event: a torn tail like that is dropped at
// the next open, its id given out again (TestStateTornTailIsDropped).
// Damage anywhere else, or a file that is not a state file, is refused,
// never overwritten (TestStateDamageIsRefused). The file is locked while
// open: a second simulator on it fails to open (TestStateFileIsLocked).
//
// Not kept, unlike at a real provider: late executions still pending
// (lost as if the request had never arrived, so the key stays free and a
// retry under it makes the charge), events not yet delivered (the client
// learns the outcome from its response, a lookup by key, or a listing),
// the faults set by POST /_faults, and Stats, which count from the open.
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
