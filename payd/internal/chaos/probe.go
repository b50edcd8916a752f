package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// features are what the payd under test has, found out by asking it.
type features struct {
	maxDelay bool // payd serve takes --provider-max-delay
	webhooks bool // payd takes webhooks, and the run sends them
	verify   bool // payd has payd verify
	admin    bool // payd serve takes --admin-addr
}

// probePayd finds out what this payd has: webhooks, a bound on the
// provider's delay, payd verify, and admin endpoints (each replica then
// gets a free port for them). What it lacks is skipped, and said so in
// the report.
func (r *run) probePayd(ctx context.Context) error {
	c, rep, l := &r.cfg, r.rep, r.launcher
	var help string
	if r.paydOn() || c.Webhooks != ModeOff {
		var err error
		if help, err = l.output(ctx, 30*time.Second, "serve", "--help"); err != nil {
			return fmt.Errorf("chaos: payd serve --help failed (%v): %s", err, help)
		}
	}
	r.has.maxDelay = strings.Contains(help, "--provider-max-delay")
	r.has.admin = strings.Contains(help, "--admin-addr")
	if c.Webhooks != ModeOff {
		r.has.webhooks = strings.Contains(help, "--webhook-secret")
		if !r.has.webhooks && c.Webhooks == ModeOn {
			return errors.New("chaos: --webhooks on, but payd serve --help lists no --webhook-secret: this payd takes no webhooks")
		}
		if !r.has.webhooks {
			rep.Skipped = append(rep.Skipped, "webhooks and their faults: payd serve --help lists no --webhook-secret")
		}
	} else {
		rep.Skipped = append(rep.Skipped, "webhooks and their faults: --webhooks off")
	}
	rep.Webhooks = r.has.webhooks && r.paydOn()
	if r.paydOn() {
		// Only a payd that does not know the command goes without its
		// strongest check; any other failure to ask is the run's.
		out, err := l.output(ctx, 30*time.Second, "verify", "--help")
		switch {
		case err == nil:
			r.has.verify = true
		case !strings.Contains(out, `unknown command "verify"`):
			return fmt.Errorf("chaos: asking payd verify --help: %w: %.300s", err, out)
		}
	}
	return nil
}

// probeRefunds finds out whether payd has refunds: it makes a charge,
// waits for it to succeed, and asks to refund 1 of it. 404 or 405 means
// no; a 2xx means yes, and the refund is part of the run.
func (r *run) probeRefunds(ctx context.Context, t *target) (bool, string, error) {
	p := plan{i: -1, key: fmt.Sprintf("chaos-%x-probe", r.cfg.Seed), reference: fmt.Sprintf("chaos_%x_probe", r.cfg.Seed),
		amount: 1000, wait: 10, timeout: 15 * time.Second, refund: 1}
	rec := &record{plan: p, start: time.Now()}
	t.mu.Lock()
	t.records = append(t.records, rec)
	t.mu.Unlock()
	defer rec.setPhase("done")
	pctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	t.accept(pctx, rec, 0)
	first, ok := rec.firstSeen()
	if !ok {
		return false, "", fmt.Errorf("chaos: payd accepted no charge within a minute before any fault: see replica-*.log in %s", r.workDir)
	}
	state := first.State
	if !isFinal(state) {
		state = t.poll(pctx, rec, first.ID)
	}
	if state != "succeeded" {
		return false, "", fmt.Errorf("chaos: payd did not charge the first charge before any fault (%q): see replica-*.log in %s", state, r.workDir)
	}
	body, _ := json.Marshal(map[string]any{"amount": p.refund})
	a, err := r.probeRefund(pctx, t, first.ID, p.key+"-refund", body)
	switch {
	case err != nil:
		return false, "", fmt.Errorf("chaos: probing refunds: %w", err)
	case a.status == http.StatusNotFound || a.status == http.StatusMethodNotAllowed:
		return false, fmt.Sprintf("POST /v1/charges/{id}/refunds answered %d: this payd has no refunds", a.status), nil
	case a.status < 200 || a.status >= 300:
		// Before any fault, a payd with refunds accepts this one; turning
		// the refund checks off here would hide whatever went wrong.
		return false, "", fmt.Errorf("chaos: probing refunds, before any fault: POST /v1/charges/{id}/refunds answered %d: %.200s (see replica-*.log in %s)", a.status, a.body, r.workDir)
	}
	if !t.refund(pctx, rec, first.ID) { // the same key: follows the refund to its end
		return false, "", fmt.Errorf("chaos: payd did not settle the probe's refund within a minute before any fault: see replica-*.log in %s", r.workDir)
	}
	return true, "", nil
}

// probeRefund sends the probe's refund, again with the same key after a
// connection that broke: a replica the run's failpoints killed as its
// worker claimed the refund, before its answer was written, is a retry
// for a client, not a payd without refunds.
func (r *run) probeRefund(ctx context.Context, t *target, chargeID, key string, body []byte) (answer, error) {
	rng := stream(r.cfg.Seed, "probe")
	for attempt := 1; ; attempt++ {
		base, _ := t.pick(rng)
		a, err := t.do(ctx, http.MethodPost, base+"/v1/charges/"+chargeID+"/refunds", key, body, 0, 15*time.Second)
		if err == nil || attempt == 5 || ctx.Err() != nil {
			return a, err
		}
		time.Sleep(500 * time.Millisecond)
	}
}
