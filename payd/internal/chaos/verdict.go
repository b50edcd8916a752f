package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/idemhq/idem/payd/internal/provider"
)

// judge checks the oracles against what the run left: the providers'
// records, payd's database and what the clients saw. A check that fails
// is a violation, and the run did not pass.
func (r *run) judge(ctx context.Context) error {
	paydFaults, naiveFaults, missed, injErrs := r.injector.counts()
	if r.paydOn() {
		if err := r.judgePayd(ctx, paydFaults, missed, injErrs); err != nil {
			return err
		}
	}
	if r.naiveOn() {
		if err := r.judgeNaive(ctx, naiveFaults); err != nil {
			return err
		}
	}
	r.rep.Passed = len(r.rep.Violations) == 0
	return nil
}

// judgePayd fills the report's target report for payd, and its
// violations.
func (r *run) judgePayd(ctx context.Context, faults, missed map[Kind]int, injErrs []string) error {
	rep, kinds := r.rep, r.cfg.Faults
	// The simulator's counts first: they explain what the oracles
	// find held.
	st, err := simStats(ctx, r.paydSim)
	if err != nil {
		return fmt.Errorf("chaos: read the simulator's counts: %w", err)
	}
	rep.Provider = st
	ev, err := r.paydEvidence(ctx, r.paydSim, r.paydT)
	if err != nil {
		return err
	}
	ev.otherAmounts = st.OtherAmounts
	tr := &rep.TargetReport
	tr.Target = TargetPayd
	tr.Requests = r.paydT.requests.Load()
	tr.Clients.Timeouts, tr.Clients.Retries = r.paydT.timeouts.Load(), r.paydT.retries.Load()
	ev.judge(tr)
	tr.Checks = append(tr.Checks, served(tr), unexpectedAnswers(ev.records), clientsDone(ev.records, ev.explain().ids()), injected(injErrs))
	ps := r.sup.stats()
	tr.Faults = map[Kind]int{}
	for _, k := range kinds {
		tr.Faults[k] = faults[k] + ps.failpointKills[k]
		if info(k).failpoint != "" {
			tr.FailpointKills += ps.failpointKills[k]
		}
	}
	rep.Processes = ProcessReport{Restarts: ps.restarts, StartFailures: len(ps.startFailures), UnexpectedExits: append([]string{}, ps.unexpected...),
		CutStops: ps.cutStops}
	for _, n := range missed {
		rep.Processes.MissedFaults += n
	}
	exits := Check{Name: "payd never exited on its own", Status: Pass, Detail: fmt.Sprintf("each of %s restarts followed a kill or a stop by the harness", itoa(ps.restarts))}
	if len(ps.unexpected) > 0 {
		exits.Status, exits.Detail, exits.Examples = Fail, fmt.Sprintf("%d payd processes exited without being killed", len(ps.unexpected)), examples(ps.unexpected)
	}
	tr.Checks = append(tr.Checks, exits, startedAgain(ps.startFailures, slices.Contains(kinds, DBReset) || slices.Contains(kinds, DBLatency)))
	tr.Checks = append(tr.Checks, ev.storeChecks(tr)...)
	tr.Checks = append(tr.Checks, r.verify(ctx, r.launcher, r.has.verify, r.databaseURL, r.paydSim))
	for _, ch := range tr.Checks {
		if ch.Status == Fail {
			rep.Violations = append(rep.Violations, ch.Name+": "+ch.Detail)
		}
	}
	return nil
}

// judgeNaive fills the naive processor's target report: the contrast,
// whose failures are no violations.
func (r *run) judgeNaive(ctx context.Context, faults map[Kind]int) error {
	rep := r.rep
	tr := &TargetReport{}
	if !r.paydOn() {
		tr = &rep.TargetReport
	} else {
		rep.Naive = tr
	}
	ev, err := r.naiveEvidence(ctx, r.naiveSim, r.naiveT)
	if err != nil {
		return err
	}
	tr.Target = TargetNaive
	tr.Requests = r.naiveT.requests.Load()
	tr.Clients.Timeouts, tr.Clients.Retries = r.naiveT.timeouts.Load(), r.naiveT.retries.Load()
	ev.judge(tr)
	tr.Checks = append(tr.Checks, clientsDone(ev.records, nil))
	crashes, _ := r.naive.stats()
	tr.Faults = map[Kind]int{}
	for _, k := range r.cfg.Faults {
		switch {
		case k == KillAfterSend || k == KillAfterResponse:
			tr.Faults[k] = crashes[k]
			tr.FailpointKills += crashes[k]
		case k == KillRandom || strings.HasPrefix(string(k), "provider-"):
			tr.Faults[k] = faults[k]
		}
	}
	return nil
}

func (r *run) paydEvidence(ctx context.Context, simURL string, t *target) (*evidence, error) {
	ev := &evidence{records: t.snapshot(), refunded: t.refunds}
	var err error
	if ev.charges, ev.refunds, err = providerLedger(ctx, simURL); err != nil {
		return nil, err
	}
	if ev.payments, err = r.db.payments(ctx); err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	if ev.store, err = r.db.store(ctx); err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	return ev, nil
}

func (r *run) naiveEvidence(ctx context.Context, simURL string, t *target) (*evidence, error) {
	ev := &evidence{records: t.snapshot(), payments: r.naive.payments()}
	var err error
	if ev.charges, ev.refunds, err = providerLedger(ctx, simURL); err != nil {
		return nil, err
	}
	return ev, nil
}

// providerLedger lists every charge and refund the simulator at url made.
func providerLedger(ctx context.Context, simURL string) ([]provider.Charge, []provider.Refund, error) {
	cl, err := provider.NewClient(simURL, &provider.ClientConfig{Timeout: 2 * time.Minute})
	if err != nil {
		return nil, nil, err
	}
	defer cl.CloseIdleConnections()
	charges, err := provider.Collect(cl.Charges(ctx, time.Time{}, time.Time{}))
	if err != nil {
		return nil, nil, fmt.Errorf("chaos: list the provider's charges: %w", err)
	}
	refunds, err := provider.Collect(cl.Refunds(ctx, time.Time{}, time.Time{}))
	if err != nil {
		return nil, nil, fmt.Errorf("chaos: list the provider's refunds: %w", err)
	}
	return charges, refunds, nil
}

func simStats(ctx context.Context, simURL string) (ProviderStats, error) {
	var st ProviderStats
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, simURL+"/_stats", nil)
	if err != nil {
		return st, err
	}
	cl := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := cl.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// verify runs payd verify, when this payd has it: its own check of every
// money invariant, against the database and the provider.
func (r *run) verify(ctx context.Context, l *launcher, available bool, databaseURL, simURL string) Check {
	v := Check{Name: "payd verify passes"}
	if !available {
		v.Status, v.Detail = Skipped, "payd verify not available (payd verify --help failed)"
		return v
	}
	out, err := l.output(ctx, 5*time.Minute, "verify", "--database-url", databaseURL, "--provider-url", simURL)
	_ = os.WriteFile(filepath.Join(r.workDir, "verify.txt"), []byte(out), 0o644)
	if err != nil {
		v.Status, v.Detail = Fail, fmt.Sprintf("payd verify exited with %v: %s", err, lastLine(out))
		v.Examples = violationLines(out)
	} else {
		v.Status, v.Detail = Pass, "payd verify exited 0: "+lastLine(out)
	}
	return v
}

// violationLines picks a few lines of payd verify's report to show.
func violationLines(out string) []string {
	var ex []string
	for _, line := range strings.Split(out, "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "payd verify:") {
			ex = append(ex, line)
		}
	}
	if len(ex) > 2*maxExamples {
		ex = append(ex[:2*maxExamples], "… (verify.txt has the rest)")
	}
	return ex
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
