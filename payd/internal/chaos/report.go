package chaos

import (
	"encoding/json"
	"io"
	"slices"
	"time"
)

// Report is a run's result: what was injected, what the clients did, and
// what the oracles found. Its JSON form is the --json file; WriteText is
// the human one.
type Report struct {
	Seed           uint64   `json:"seed"`
	ScheduleDigest string   `json:"schedule_digest"`
	Reproduce      string   `json:"reproduce,omitempty"` // the command that runs the same schedule
	Database       string   `json:"database"`            // "sqlite", "postgres", or "none" without payd
	Replicas       int      `json:"replicas"`
	DurationS      float64  `json:"duration_s"` // the faulted part
	DrainS         float64  `json:"drain_s"`
	FaultKinds     []Kind   `json:"fault_kinds"` // the kinds enabled in this run
	Refunds        bool     `json:"refunds"`
	Webhooks       bool     `json:"webhooks"`
	WorkDir        string   `json:"work_dir,omitempty"`
	Skipped        []string `json:"skipped"`    // what was not checked or not injected, and why
	Violations     []string `json:"violations"` // one line per failed check of the system under test
	Passed         bool     `json:"passed"`

	// TargetReport is payd's result, or the naive processor's when it ran
	// alone.
	TargetReport
	// Naive is the contrast: the naive processor under the same workload
	// and faults. Its findings are expected, and never fail the run.
	Naive *TargetReport `json:"naive,omitempty"`

	Provider  ProviderStats `json:"provider"`  // payd's simulator, as counted by it
	Processes ProcessReport `json:"processes"` // payd's processes
}

// TargetReport is the result for one system under test.
type TargetReport struct {
	Target          string `json:"target"`
	Requests        int64  `json:"requests"` // HTTP requests clients sent
	Payments        int    `json:"payments"`
	ProviderCharges int    `json:"provider_charges"` // every charge the provider made, declines included
	MoneyCharges    int    `json:"provider_charges_succeeded"`
	DoubleCharges   int    `json:"double_charges"` // provider charges beyond the first for one payment key
	LostCharges     int    `json:"lost_charges"`   // succeeded provider charges no succeeded payment records
	StuckPayments   int    `json:"stuck_payments"` // payments not final after the drain
	Mismatched2xx   int    `json:"mismatched_2xx"` // 2xx answers that disagree with the final state
	// HeldPayments and HeldRefunds are those payd holds after the drain
	// with their hold explained by an injected fault (listed in Held);
	// they are neither stuck nor lost. MismatchesExplained counts the open
	// mismatches that explain them.
	HeldPayments        int          `json:"held_payments"`
	HeldRefunds         int          `json:"held_refunds"`
	MismatchesExplained int          `json:"mismatches_explained"`
	Held                []HeldItem   `json:"held,omitempty"`
	Faults              map[Kind]int `json:"faults"` // injected, per kind
	FailpointKills      int          `json:"failpoint_kills"`
	LatencyMS           Latency      `json:"latency_ms"`
	Clients             ClientStats  `json:"clients"`
	Checks              []Check      `json:"checks"`
}

// HeldItem is a payment or refund payd holds after the drain, explained:
// the provider made it for another amount (provider-other-amount), and
// payd opened a mismatch and stopped, for an operator to correct it.
type HeldItem struct {
	Subject        string `json:"subject"` // "payment" or "refund"
	ID             string `json:"id"`
	ProviderKey    string `json:"provider_key"`
	Amount         int64  `json:"amount"`          // payd's
	ProviderAmount int64  `json:"provider_amount"` // the provider's, under the same key
	Hold           string `json:"hold"`            // payd's reason
	Mismatch       string `json:"mismatch"`        // the open mismatch's id
}

// Latency are percentiles in milliseconds from a charge's first request:
// to its first 2xx (accept) and to the first final status its client saw
// (settle).
type Latency struct {
	Accept Percentiles `json:"accept"`
	Settle Percentiles `json:"settle"`
}

// Percentiles of a set of durations, in milliseconds.
type Percentiles struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

func percentiles(ds []time.Duration) Percentiles {
	if len(ds) == 0 {
		return Percentiles{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(q float64) float64 {
		i := int(q*float64(len(s))+0.5) - 1
		i = min(max(i, 0), len(s)-1)
		return float64(s[i].Microseconds()) / 1000
	}
	return Percentiles{Count: len(s), P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: float64(s[len(s)-1].Microseconds()) / 1000}
}

// ClientStats counts what the clients did.
type ClientStats struct {
	Charges      int   `json:"charges"`       // charges started (payment keys)
	DoubleClicks int   `json:"double_clicks"` // of which sent twice at once
	PreferWait   int   `json:"prefer_wait"`   // of which asked to wait for the outcome
	Timeouts     int64 `json:"timeouts"`      // requests the client gave up waiting for
	Retries      int64 `json:"retries"`       // requests sent again with the same key
	Acknowledged int   `json:"acknowledged"`  // charges that got a 2xx
	GaveUp       int   `json:"gave_up"`       // charges that never got one
	Refunds      int   `json:"refunds"`       // refunds that got a 2xx
}

// Check is one oracle's verdict.
type Check struct {
	Name     string   `json:"name"`
	Status   string   `json:"status"` // pass, fail or skipped
	Detail   string   `json:"detail"`
	Examples []string `json:"examples,omitempty"` // a few offenders, when it failed
}

// Check statuses.
const (
	Pass    = "pass"
	Fail    = "fail"
	Skipped = "skipped"
)

// ProviderStats are the simulator's own counts (GET /_stats).
type ProviderStats struct {
	Requests          int64 `json:"requests"`
	Errors            int64 `json:"errors"`
	RateLimited       int64 `json:"rate_limited"`
	Drops             int64 `json:"drops"`
	Hangs             int64 `json:"hangs"`
	LateExecutions    int64 `json:"late_executions"`     // requests executed late, after their response was lost
	InFlightConflicts int64 `json:"in_flight_conflicts"` // answered 409 while their key was in flight
	OtherAmounts      int64 `json:"other_amounts"`       // charges and refunds made for another amount than asked
	WebhookAttempts   int64 `json:"webhook_attempts"`
	WebhooksDelivered int64 `json:"webhooks_delivered"`
	WebhooksAbandoned int64 `json:"webhooks_abandoned"`
}

// ProcessReport is what happened to payd's processes.
type ProcessReport struct {
	Restarts        int      `json:"restarts"`
	StartFailures   int      `json:"start_failures"` // processes that died before they were ready (a database fault, usually)
	UnexpectedExits []string `json:"unexpected_exits"`
	MissedFaults    int      `json:"missed_faults"` // process faults whose replica was down at the time
	// CutStops counts stops by SIGTERM whose grace ran out with requests
	// in flight, which payd cut, exiting 1 as it says it does.
	CutStops int `json:"cut_stops"`
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
