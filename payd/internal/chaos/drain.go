package chaos

import (
	"context"
	"fmt"
	"time"
)

// play runs the schedule's faults and starts the clients' charges until
// Config.Duration has passed, showing progress; the clients go on until
// clientCtx ends. It returns ctx's error if ctx ends first.
func (r *run) play(ctx, clientCtx context.Context, w *workload) error {
	c := &r.cfg
	sims, links := r.providers()
	r.injector = newInjector(r.ctl, r.sched, r.base, sims, links, r.dbLink, r.sup, r.naive)
	start := time.Now()
	runCtx, stopRun := context.WithTimeout(ctx, c.Duration)
	defer stopRun()
	r.background.Go(func() { r.injector.run(ctx, runCtx, start) })
	r.background.Go(func() { w.run(runCtx, clientCtx) })
	r.progress.say("running for %s…", c.Duration)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for runCtx.Err() == nil {
		select {
		case <-runCtx.Done():
		case <-tick.C:
			r.progress.update(r.status(start, c.Duration, r.paydT, r.naiveT))
		}
	}
	r.background.Wait()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("chaos: stopped: %w", err)
	}
	r.rep.DurationS = time.Since(start).Seconds()
	return nil
}

// status is the progress line while faults run.
func (r *run) status(start time.Time, d time.Duration, paydT, naiveT *target) string {
	s := fmt.Sprintf("chaos %s/%s", clock(time.Since(start)), clock(d))
	if paydT != nil {
		faults, _, _, _ := r.injector.counts()
		n := 0
		for _, v := range faults {
			n += v
		}
		kills := 0
		for _, v := range r.sup.stats().failpointKills {
			kills += v
		}
		s += fmt.Sprintf(" | payd: %s requests, %d in flight, %s faults + %s failpoint kills, %d/%d up",
			itoa(int(paydT.requests.Load())), paydT.inFlight.Load(), itoa(n), itoa(kills), r.sup.upCount(), r.cfg.Replicas)
	}
	if naiveT != nil {
		s += fmt.Sprintf(" | naive: %s requests, %d in flight", itoa(int(naiveT.requests.Load())), naiveT.inFlight.Load())
	}
	return s
}

// drain heals every fault, restarts every replica without failpoints and
// waits, at most Config.DrainTimeout, for every payment to be final and
// every client to have seen its outcome; then it stops the clients.
func (r *run) drain(ctx context.Context, stopClients context.CancelFunc, w *workload) error {
	c, rep := &r.cfg, r.rep
	drainStart := time.Now()
	r.progress.say("draining: faults healed, every replica restarted without failpoints, waiting for every payment to be final (at most %s)…", c.DrainTimeout)
	if err := r.injector.heal(ctx); err != nil {
		rep.Skipped = append(rep.Skipped, "part of the drain: "+err.Error())
	}
	if r.sup != nil {
		r.sup.recycle()
	}
	r.awaitSettled(ctx, drainStart)
	stopClients()
	w.wait()
	for _, t := range r.targets {
		if n := t.comeBack(ctx); n > 0 {
			r.progress.say("%s: %s clients that had stopped following came back and saw their outcome", t.name, itoa(n))
		}
	}
	rep.DrainS = time.Since(drainStart).Seconds()
	r.progress.done()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("chaos: stopped: %w", err)
	}
	r.progress.say("drained in %s; checking…", time.Duration(rep.DrainS*float64(time.Second)).Round(100*time.Millisecond))
	return nil
}

// awaitSettled waits until no payment or refund is left open and no client
// is in flight, or clientGrace after every payment is final, or until the
// drain's deadline, showing progress.
func (r *run) awaitSettled(ctx context.Context, drainStart time.Time) {
	deadline := time.Now().Add(r.cfg.DrainTimeout)
	var settledAt time.Time // when no payment was left open
	for {
		notFinal, all, inFlight, held := r.drainState(ctx)
		if notFinal == 0 && settledAt.IsZero() {
			settledAt = time.Now()
		}
		// Once every payment is final, clients get clientGrace to see it.
		late := !settledAt.IsZero() && time.Since(settledAt) > clientGrace
		if notFinal == 0 && inFlight == 0 || late || time.Now().After(deadline) || ctx.Err() != nil {
			return
		}
		line := fmt.Sprintf("drain %s | payments and refunds not final %s (of %s payments) | clients in flight %d", clock(time.Since(drainStart)), itoa(notFinal), itoa(all), inFlight)
		if len(held) > 0 {
			line += fmt.Sprintf(" | held %d (not waited for)", len(held))
		}
		if r.sup != nil {
			line += fmt.Sprintf(" | replicas up %d/%d", r.sup.upCount(), r.cfg.Replicas)
		}
		r.progress.update(line)
		sleepCtx(ctx, 500*time.Millisecond)
	}
}

// drainState is where the drain stands: payments and refunds not final
// (-1 if they cannot be counted), payments in all, clients still waiting
// for something other than a held payment or refund, and the held ones.
func (r *run) drainState(ctx context.Context) (notFinal, all int, inFlight int64, held map[string]bool) {
	if r.db != nil {
		n, a, err := r.db.notFinal(ctx)
		if err != nil {
			n = -1
		}
		notFinal, all = n, a
	}
	for _, t := range r.targets {
		inFlight += t.inFlight.Load()
	}
	held = map[string]bool{}
	if r.db != nil {
		// A held payment or refund waits for an operator, and so does
		// its client: the drain waits for neither. An error only
		// makes the drain wait longer.
		if held, _ = r.db.held(ctx); len(held) > 0 {
			inFlight -= int64(r.paydT.waitingOn(held))
		}
	}
	return notFinal, all, inFlight, held
}
