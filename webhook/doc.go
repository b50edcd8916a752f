// Package webhook receives signed events from a provider safely: it
// verifies each delivery first, then applies each event exactly once,
// however often and to however many instances it is delivered.
//
//	v := &webhook.Verifier{Secrets: [][]byte{secret}}
//	h, _ := webhook.NewHandler(engine, v, applyEvent, &webhook.Config{Source: "provider"})
//	mux.Handle("POST /webhooks/provider", h)
//
// # Signatures
//
// A delivery carries a header (Webhook-Signature by default) of the form
//
//	t=1767225600,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd
//
// where v1 is the hex HMAC-SHA256, under a shared secret, of the
// timestamp, a period and the raw body. Sign makes one; Verifier checks
// one: MACs compared in constant time (hmac.Equal), several secrets for
// rotation, several v1 values per header, and the timestamp within a
// tolerance (5 minutes by default) of the receiver's clock in both
// directions, which bounds how long a captured delivery can be replayed.
//
// # Exactly once
//
// Handler verifies the raw body before anything else: a delivery that is
// unsigned, forged, tampered with or stale gets 400 and touches no store,
// so a forged event can never claim the id of a real one and make the real
// one look like a duplicate. Verified events are then de-duplicated by
// (source, id) through an idem.Engine: the first delivery applies the
// event, concurrent deliveries to any instance sharing the engine's store
// wait for it, and later ones are acknowledged without applying it again.
// An event that fails to apply is not recorded, so the sender's retry
// applies it again.
//
// The engine forgets an event after its Retention (24h by default). Set it
// longer than the sender's redelivery window (three days for some
// providers), or a late redelivery is applied again.
//
// apply must still tolerate a second run in one case: if the process dies
// after apply's effect and before the outcome is recorded. Fence its writes
// with idem.LeaseFrom(ctx), or make them idempotent by event id.
package webhook
