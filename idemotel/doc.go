// Package idemotel reports an idem engine's events to OpenTelemetry: a span
// per event, joined to the caller's trace, and metrics of outcomes and
// durations. New returns the func to set as idem.Config.Observer.
//
//	observer, err := idemotel.New(&idemotel.Config{Store: "postgres"})
//	...
//	engine, err := idem.New(store, &idem.Config{Observer: observer})
//
// # Spans
//
// Each event becomes a span named "idem." and its outcome, such as
// "idem.replayed", a child of the span in the caller's context
// (TestReplayedSpanIsChildOfCaller). Events arrive after the fact, so the
// span of an event with a duration (fn running, a wait) starts that long
// before the event and ends at it (TestSpanCoversTheDuration); the others
// last no time. Attributes:
//
//	idem.outcome    the event's kind: executed, replayed, waited, takeover,
//	                lease_lost, released, mismatch, in_flight, store_error,
//	                not_recorded
//	idem.fence      the lease's fence, when the event knows it (a replay
//	                does not)
//	idem.store      Config.Store, when set
//	idem.store_key  the store key: namespace, "/", and the SHA-256 of the key
//
// The caller's raw key is never recorded (TestReplayedSpanIsChildOfCaller).
// idem.store_key is there to find the same call in idem's logs, which carry
// it too. It cannot be reversed, but it is not salted: whoever can guess a
// key can confirm the guess.
//
// Spans of not_recorded, store_error and lease_lost have status Error
// (TestErrorKindsMarkSpans). The description of the first two is the store
// error's message, as idem logs it; the errors fn returns are the
// application's and are left out, since they may hold anything.
//
// # Metrics
//
//	idem.events        counter of events, by idem.outcome
//	idem.duration      histogram in seconds of how long fn ran or the call
//	                   waited, by idem.outcome, for the events with a
//	                   duration: executed, waited, lease_lost, not_recorded
//	                   (TestSpanCoversTheDuration)
//	idem.not_recorded  counter of outcomes lost after fn ran: the effect
//	                   happened, the record is missing. Alert on any increase.
//
// Their only attributes are idem.outcome (not on idem.not_recorded) and
// idem.store, so their cardinality stays bounded (TestMetrics).
package idemotel
