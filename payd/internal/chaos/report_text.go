package chaos

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteText writes the report for people: the figures side by side, the
// faults, each check, and the verdict.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	r.writeRun(&b)
	cols, heads := r.columns()
	r.writeFigures(&b, cols, heads)
	r.writeFaults(&b, cols, heads)
	if r.Target != TargetNaive {
		r.writeProvider(&b)
	}
	writeChecks(&b, cols)
	r.writeVerdict(&b)
	_, err := io.WriteString(w, b.String())
	return err
}

// writeRun says what ran: the seed, the schedule, the run's length and
// where the logs are.
func (r *Report) writeRun(b *strings.Builder) {
	db := map[string]string{"sqlite": "SQLite", "postgres": "PostgreSQL"}[r.Database]
	fmt.Fprintf(b, "payd chaos: seed %d, schedule %s\n", r.Seed, r.ScheduleDigest)
	if r.Target == TargetNaive {
		fmt.Fprintf(b, "%s of faults on the naive processor (in the harness), then a drain of %s.\n", seconds(r.DurationS), seconds(r.DrainS))
	} else {
		fmt.Fprintf(b, "%s of faults on %s with %d replica(s), then a drain of %s.\n",
			seconds(r.DurationS), db, r.Replicas, seconds(r.DrainS))
	}
	if r.WorkDir != "" {
		fmt.Fprintf(b, "Process logs: %s\n", r.WorkDir)
	}
	b.WriteString("\n")
}

// columns are the targets the report shows side by side, and their
// headings.
func (r *Report) columns() (cols []*TargetReport, heads []string) {
	cols = []*TargetReport{&r.TargetReport}
	heads = []string{r.Target}
	if r.Naive != nil {
		cols = append(cols, r.Naive)
		heads = append(heads, "naive (unsafe baseline)")
	}
	if r.Target == TargetNaive {
		heads[0] = "naive (unsafe baseline)"
	}
	return cols, heads
}

// writeFigures writes the figures of each column, side by side.
func (r *Report) writeFigures(b *strings.Builder, cols []*TargetReport, heads []string) {
	tw := tabwriter.NewWriter(b, 0, 4, 3, ' ', tabwriter.AlignRight)
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

}

// writeFaults writes how many faults of each kind each column had.
func (r *Report) writeFaults(b *strings.Builder, cols []*TargetReport, heads []string) {
	b.WriteString("\nFaults injected:\n")
	tw := tabwriter.NewWriter(b, 0, 4, 3, ' ', 0)
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
}

// writeProvider writes what the provider and payd's processes went
// through, and what payd holds for an operator.
func (r *Report) writeProvider(b *strings.Builder) {
	p := r.Provider
	fmt.Fprintf(b, "  The provider answered %s 500s and %s 429s, dropped %s responses after charging, held %s; webhooks: %s delivered, %s abandoned.\n",
		itoa(int(p.Errors)), itoa(int(p.RateLimited)), itoa(int(p.Drops)), itoa(int(p.Hangs)),
		itoa(int(p.WebhooksDelivered)), itoa(int(p.WebhooksAbandoned)))
	fmt.Fprintf(b, "  It executed %s requests late (their responses lost), answered %s 409s for keys in flight, and made %s charges or refunds for another amount.\n",
		itoa(int(p.LateExecutions)), itoa(int(p.InFlightConflicts)), itoa(int(p.OtherAmounts)))
	fmt.Fprintf(b, "  payd processes: %s restarts, %s died before they were ready, %s process faults missed their replica (down at the time), %s stops cut requests in flight when their grace ran out.\n",
		itoa(r.Processes.Restarts), itoa(r.Processes.StartFailures), itoa(r.Processes.MissedFaults), itoa(r.Processes.CutStops))
	if len(r.Held) > 0 {
		fmt.Fprintf(b, "  Held by payd for an operator, each explained by a provider-other-amount fault (%s):\n", itoa(len(r.Held)))
		for i, h := range r.Held {
			if i == maxExamples {
				fmt.Fprintf(b, "    … and %d more (the JSON report lists them all)\n", len(r.Held)-maxExamples)
				break
			}
			fmt.Fprintf(b, "    %s %s: %d asked, the provider %d; mismatch %s\n", h.Subject, h.ID, h.Amount, h.ProviderAmount, h.Mismatch)
		}
	}
}

// writeChecks writes each column's checks, with their examples.
func writeChecks(b *strings.Builder, cols []*TargetReport) {
	for _, c := range cols {
		name := c.Target
		if c.Target == TargetNaive {
			name = "naive (the contrast: failures expected, never fail the run)"
		}
		fmt.Fprintf(b, "\nChecks, %s:\n", name)
		for _, ch := range c.Checks {
			fmt.Fprintf(b, "  %-7s %s: %s\n", strings.ToUpper(ch.Status), ch.Name, ch.Detail)
			for _, e := range ch.Examples {
				fmt.Fprintf(b, "            %s\n", e)
			}
		}
	}
}

// writeVerdict writes what the run left out, the verdict and how to
// reproduce the run.
func (r *Report) writeVerdict(b *strings.Builder) {
	if len(r.Skipped) > 0 {
		b.WriteString("\nNot in this run:\n")
		for _, s := range r.Skipped {
			fmt.Fprintf(b, "  - %s\n", s)
		}
	}
	b.WriteString("\n")
	if r.Passed {
		fmt.Fprintf(b, "PASS: no violations (seed %d).\n", r.Seed)
	} else {
		fmt.Fprintf(b, "FAIL: %d violation(s):\n", len(r.Violations))
		for _, v := range r.Violations {
			fmt.Fprintf(b, "  - %s\n", v)
		}
	}
	if r.Reproduce != "" {
		fmt.Fprintf(b, "Reproduce: %s\n", r.Reproduce)
	}
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
