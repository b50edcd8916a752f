// Package idemprom counts an idem engine's events in Prometheus metrics.
// New registers the collectors on a Registerer and returns the func to set
// as idem.Config.Observer.
//
//	observer, err := idemprom.New(prometheus.WrapRegistererWith(prometheus.Labels{"store": "postgres"}, reg))
//	...
//	engine, err := idem.New(store, &idem.Config{Observer: observer})
//
// Metrics:
//
//	idem_events_total{outcome}      counter of events by kind: executed,
//	                                replayed, waited, takeover, lease_lost,
//	                                released, mismatch, in_flight,
//	                                store_error, not_recorded
//	idem_duration_seconds{outcome}  histogram of how long fn ran or the call
//	                                waited, for the events with a duration:
//	                                executed, waited, lease_lost,
//	                                not_recorded
//	idem_not_recorded_total         counter of outcomes lost after fn ran:
//	                                the effect happened and the record is
//	                                missing. Alert on any increase.
//
// Each event counts once in idem_events_total, and its duration, if it has
// one, in idem_duration_seconds (TestCountsEventsAndDurations). Every
// outcome of idem_events_total, and idem_not_recorded_total, is exported
// from the start at 0, so a rate or an alert has a series before the first
// event (TestSeriesStartAtZero). No label holds a key or a fence, so
// cardinality stays bounded.
//
// New registers all three collectors or none, and fails if they are
// registered already (TestRegister). To tell stores or engines apart, and
// to observe more than one engine in one registry, give each its own
// constant labels with prometheus.WrapRegistererWith, as above.
package idemprom
