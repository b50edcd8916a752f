package chaos

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
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
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes the report for people: the figures side by side, the
// faults, each check, and the verdict.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	db := map[string]string{"sqlite": "SQLite", "postgres": "PostgreSQL"}[r.Database]
	fmt.Fprintf(&b, "payd chaos: seed %d, schedule %s\n", r.Seed, r.ScheduleDigest)
	if r.Target == TargetNaive {
		fmt.Fprintf(&b, "%s of faults on the naive processor (in the harness), then a drain of %s.\n", seconds(r.DurationS), seconds(r.DrainS))
	} else {
		fmt.Fprintf(&b, "%s of faults on %s with %d replica(s), then a drain of %s.\n",
			seconds(r.DurationS), db, r.Replicas, seconds(r.DrainS))
	}
	if r.WorkDir != "" {
		fmt.Fprintf(&b, "Process logs: %s\n", r.WorkDir)
	}
	b.WriteString("\n")

	cols := []*TargetReport{&r.TargetReport}
	heads := []string{r.Target}
	if r.Naive != nil {
		cols = append(cols, r.Naive)
		heads = append(heads, "naive (unsafe baseline)")
	}
	if r.Target == TargetNaive {
		heads[0] = "naive (unsafe baseline)"
	}
	tw := tabwriter.NewWriter(&b, 0, 4, 3, ' ', tabwriter.AlignRight)
	row := func(name string, f func(*TargetReport) string) {
		fmt.Fprintf(tw, "  %s\t", name)
		for _, c := range cols {
			fmt.Fprintf(tw, "%s\t", f(c))
		}
		fmt.Fprintln(tw)
	}
	fmt.Fprintf(tw, "  \t%s\t\n", strings.Join(heads, "\t"))
	row("charges started", func(c *TargetReport) string { return itoa(c.Clients.Charges) })
	row("  double clicks", func(c *TargetReport) string { return itoa(c.Clients.DoubleClicks) })
	row("  asked to wait", func(c *TargetReport) string { return itoa(c.Clients.PreferWait) })
	row("requests", func(c *TargetReport) string { return itoa(int(c.Requests)) })
	row("  timed out", func(c *TargetReport) string { return itoa(int(c.Clients.Timeouts)) })
	row("  retries", func(c *TargetReport) string { return itoa(int(c.Clients.Retries)) })
	row("charges acknowledged (2xx)", func(c *TargetReport) string { return itoa(c.Clients.Acknowledged) })
	row("refunds acknowledged (2xx)", func(c *TargetReport) string { return itoa(c.Clients.Refunds) })
	row("payments", func(c *TargetReport) string { return itoa(c.Payments) })
	row("provider charges", func(c *TargetReport) string { return itoa(c.ProviderCharges) })
	row("  succeeded (money moved)", func(c *TargetReport) string { return itoa(c.MoneyCharges) })
	row("double charges", func(c *TargetReport) string { return itoa(c.DoubleCharges) })
	row("lost charges", func(c *TargetReport) string { return itoa(c.LostCharges) })
	row("stuck payments", func(c *TargetReport) string { return itoa(c.StuckPayments) })
	row("2xx not matching the final state", func(c *TargetReport) string { return itoa(c.Mismatched2xx) })
	if r.Target != TargetNaive {
		held := func(f func(*TargetReport) int) func(*TargetReport) string {
			return func(c *TargetReport) string {
				if c.Target == TargetNaive {
					return "-" // it holds nothing
				}
				return itoa(f(c))
			}
		}
		row("held payments (explained)", held(func(c *TargetReport) int { return c.HeldPayments }))
		row("held refunds (explained)", held(func(c *TargetReport) int { return c.HeldRefunds }))
		row("open mismatches (explained)", held(func(c *TargetReport) int { return c.MismatchesExplained }))
	}
	row("failpoint kills", func(c *TargetReport) string { return itoa(c.FailpointKills) })
	row("accept ms p50 / p90 / p99", func(c *TargetReport) string { return pct(c.LatencyMS.Accept) })
	row("settle ms p50 / p90 / p99", func(c *TargetReport) string { return pct(c.LatencyMS.Settle) })
	tw.Flush()

	b.WriteString("\nFaults injected:\n")
	tw = tabwriter.NewWriter(&b, 0, 4, 3, ' ', 0)
	fmt.Fprintf(tw, "  \t%s\t\n", strings.Join(heads, "\t"))
	for _, k := range r.FaultKinds {
		fmt.Fprintf(tw, "  %s\t", k)
		for _, c := range cols {
			v, ok := c.Faults[k]
			if !ok {
				fmt.Fprint(tw, "-\t")
				continue
			}
			fmt.Fprintf(tw, "%s\t", itoa(v))
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	if r.Target != TargetNaive {
		p := r.Provider
		fmt.Fprintf(&b, "  The provider answered %s 500s and %s 429s, dropped %s responses after charging, held %s; webhooks: %s delivered, %s abandoned.\n",
			itoa(int(p.Errors)), itoa(int(p.RateLimited)), itoa(int(p.Drops)), itoa(int(p.Hangs)),
			itoa(int(p.WebhooksDelivered)), itoa(int(p.WebhooksAbandoned)))
		fmt.Fprintf(&b, "  It executed %s requests late (their responses lost), answered %s 409s for keys in flight, and made %s charges or refunds for another amount.\n",
			itoa(int(p.LateExecutions)), itoa(int(p.InFlightConflicts)), itoa(int(p.OtherAmounts)))
		fmt.Fprintf(&b, "  payd processes: %s restarts, %s died before they were ready, %s process faults missed their replica (down at the time).\n",
			itoa(r.Processes.Restarts), itoa(r.Processes.StartFailures), itoa(r.Processes.MissedFaults))
		if len(r.Held) > 0 {
			fmt.Fprintf(&b, "  Held by payd for an operator, each explained by a provider-other-amount fault (%s):\n", itoa(len(r.Held)))
			for i, h := range r.Held {
				if i == maxExamples {
					fmt.Fprintf(&b, "    … and %d more (the JSON report lists them all)\n", len(r.Held)-maxExamples)
					break
				}
				fmt.Fprintf(&b, "    %s %s: %d asked, the provider %d; mismatch %s\n", h.Subject, h.ID, h.Amount, h.ProviderAmount, h.Mismatch)
			}
		}
	}

	for _, c := range cols {
		name := c.Target
		if c.Target == TargetNaive {
			name = "naive (the contrast: failures expected, never fail the run)"
		}
		fmt.Fprintf(&b, "\nChecks, %s:\n", name)
		for _, ch := range c.Checks {
			fmt.Fprintf(&b, "  %-7s %s: %s\n", strings.ToUpper(ch.Status), ch.Name, ch.Detail)
			for _, e := range ch.Examples {
				fmt.Fprintf(&b, "            %s\n", e)
			}
		}
	}
	if len(r.Skipped) > 0 {
		b.WriteString("\nNot in this run:\n")
		for _, s := range r.Skipped {
			fmt.Fprintf(&b, "  - %s\n", s)
		}
	}
	b.WriteString("\n")
	if r.Passed {
		fmt.Fprintf(&b, "PASS: no violations (seed %d).\n", r.Seed)
	} else {
		fmt.Fprintf(&b, "FAIL: %d violation(s):\n", len(r.Violations))
		for _, v := range r.Violations {
			fmt.Fprintf(&b, "  - %s\n", v)
		}
	}
	if r.Reproduce != "" {
		fmt.Fprintf(&b, "Reproduce: %s\n", r.Reproduce)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func pct(p Percentiles) string {
	if p.Count == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f / %.0f / %.0f", p.P50, p.P90, p.P99)
}

func seconds(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(100 * time.Millisecond).String()
}

// itoa formats n with thousands separators.
func itoa(n int) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}
