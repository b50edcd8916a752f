// Package chaos is payd's proof: a harness that runs payd as real
// processes, drives it with clients that time out, retry and double-click,
// breaks it on a seeded schedule, then drains it and checks that no money
// went wrong.
//
// # The run
//
// Run starts, as separate OS processes of the payd executable, the
// provider simulator (payd provider-sim) and 1 to 3 payd replicas (payd
// serve --role all), on SQLite or PostgreSQL. A TCP fault proxy (toxiproxy,
// as a library) sits between payd and the provider, and between payd and
// PostgreSQL. Clients send charges at a fixed rate, each with one
// Idempotency-Key, through a timeout shorter than the provider's latency;
// they retry with the same key and body, sometimes send two at once (a
// double click), sometimes ask to wait for the outcome (Prefer: wait), and
// refund some of the charges that succeed when payd has refunds.
//
// # Faults
//
// Every fault and every client's behaviour is drawn from the run's seed,
// from random sources split per concern, so the same seed gives the same
// schedule however the run's timing falls out (see NewSchedule). Process
// faults are real signals: SIGKILL at payd's failpoints (after a claim,
// after the provider request is sent, after its response and before the
// outcome is recorded) and at random times, and SIGSTOP past the lease
// followed by SIGCONT; a killed replica is restarted after a short seeded
// delay. Provider faults come from the simulator (500 and 429 bursts,
// charges whose response is dropped, hangs, requests executed late after
// lookups said "not found", 409s for keys in flight, charges and refunds
// for another amount than asked, duplicated and reordered webhooks) and
// from the proxy (resets and latency on the link). Database
// faults (resets and latency spikes) need PostgreSQL: SQLite has no network
// hop to break.
//
// # Oracles
//
// After the drain (faults stopped and healed, every replica restarted
// without failpoints, every payment and refund not held given time to
// settle) Run checks, from the simulator's charges, refunds and counts,
// payd's database and the record of what each client was told:
//
//   - at most one provider charge per payment key (no double charge);
//   - every provider charge belongs to exactly one succeeded payment (no
//     lost charge), and every succeeded payment to a provider charge for
//     its amount;
//   - every 2xx a client got matches the payment's final state;
//   - no payment or refund is left non-terminal;
//   - provider refunds and payd's refunds map one to one, each posted once;
//   - per merchant and currency, the ledger's balance equals what the
//     provider charged less what it refunded;
//   - every payment and refund payd holds, and every mismatch it has open,
//     is explained by a fault the run injected (a charge or refund the
//     provider made for another amount); the other checks excuse those;
//   - the ledger sums to zero, one ledger transaction per charge, and payd
//     verify passes.
//
// A check whose subject this payd lacks (refunds, the ledger, holds, payd
// verify) is reported as skipped, never as passed.
//
// # The contrast
//
// Target "naive" runs the same workload and the same provider faults
// against a processor that lives in the harness and does what the first
// design of a payment API does: it charges the provider with a fresh key on
// every request, then inserts the row. Its double and lost charges are
// reported beside payd's, and never fail the run.
package chaos
