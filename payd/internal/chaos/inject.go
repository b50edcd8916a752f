package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/idemhq/idem/internal/faultproxy"
)

// simFaults are the simulator's faults, as POST /_faults takes them.
type simFaults struct {
	LatencyMin, LatencyMax time.Duration
	ErrorRate              float64
	RateLimitRate          float64
	DropRate               float64
	HangRate               float64
	HangFor                time.Duration
	WebhookDuplicateRate   float64
	WebhookReorder         time.Duration

	// LateRate of new charges and refunds are accepted, their response
	// lost, looked up as "not found" and executed LateMin to LateMax
	// later. LateMin and LateMax are the run's, set outside the windows
	// too; they are sent only with a LateRate.
	LateRate         float64
	LateMin, LateMax time.Duration
	InFlightRate     float64 // of requests whose key is still in flight get 409
	OtherAmountRate  float64 // of new charges and refunds are made for another amount
}

// MarshalJSON writes f as POST /_faults takes it. The late, in-flight
// and other-amount faults are written only when set: a simulator that
// predates them refuses a field it does not know, and so still takes
// every other fault outside their windows.
func (f simFaults) MarshalJSON() ([]byte, error) {
	m := map[string]any{
		"latency_min":            f.LatencyMin.String(),
		"latency_max":            f.LatencyMax.String(),
		"error_rate":             f.ErrorRate,
		"rate_limit_rate":        f.RateLimitRate,
		"drop_after_charge_rate": f.DropRate,
		"hang_rate":              f.HangRate,
		"hang_for":               f.HangFor.String(),
		"webhook_duplicate_rate": f.WebhookDuplicateRate,
		"webhook_reorder":        f.WebhookReorder.String(),
	}
	if f.LateRate > 0 {
		m["late_rate"], m["late_min"], m["late_max"] = f.LateRate, f.LateMin.String(), f.LateMax.String()
	}
	if f.InFlightRate > 0 {
		m["in_flight_rate"] = f.InFlightRate
	}
	if f.OtherAmountRate > 0 {
		m["other_amount_rate"] = f.OtherAmountRate
	}
	return json.Marshal(m)
}

// setSimFaults replaces the faults of the simulator at url.
func setSimFaults(ctx context.Context, c *http.Client, url string, f simFaults) error {
	body, err := json.Marshal(f)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/_faults", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("set the simulator's faults: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("set the simulator's faults: %d %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	return nil
}

// link is the state of a fault proxy.
type link struct {
	reset   bool
	latency time.Duration
}

func applyLink(p *faultproxy.Proxy, l link) error {
	if err := p.Heal(); err != nil {
		return err
	}
	if l.reset {
		if err := p.Reset(); err != nil {
			return err
		}
	}
	if l.latency > 0 {
		return p.Latency(l.latency)
	}
	return nil
}

// injector plays a schedule: it opens and closes fault windows on the
// simulators and the proxies, and signals the replicas.
type injector struct {
	sched    Schedule
	base     simFaults           // the simulators' faults outside every window
	sims     []string            // the simulators' URLs
	provider []*faultproxy.Proxy // payd's and the naive's links to their providers
	db       *faultproxy.Proxy   // payd's link to PostgreSQL; nil on SQLite
	sup      *supervisor         // nil without payd
	naive    *naive              // nil without the naive target
	http     *http.Client

	mu       sync.Mutex
	active   map[int]Event  // open windows, by event index
	paused   map[int]*child // the process each open pause stopped, by event index
	last     [2]link        // provider links, database link: as last applied
	payd     map[Kind]int   // faults that reached payd
	contrast map[Kind]int   // faults that reached the naive processor
	missed   map[Kind]int   // process faults whose replica was down
	errs     []string
}

func newInjector(ctl *http.Client, sched Schedule, base simFaults, sims []string, provider []*faultproxy.Proxy, db *faultproxy.Proxy, sup *supervisor, nv *naive) *injector {
	return &injector{
		sched: sched, base: base, sims: sims, provider: provider, db: db, sup: sup, naive: nv,
		http:   ctl,
		active: map[int]Event{}, paused: map[int]*child{},
		payd: map[Kind]int{}, contrast: map[Kind]int{}, missed: map[Kind]int{},
	}
}

// step is the start or the end of one event.
type step struct {
	at    time.Duration
	event int
	end   bool
}

func (in *injector) steps() []step {
	var out []step
	for i, e := range in.sched.Events {
		out = append(out, step{at: e.At, event: i})
		if e.For > 0 {
			out = append(out, step{at: e.At + e.For, event: i, end: true})
		}
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].at < out[b].at })
	return out
}

// run plays the schedule from start until runCtx is done. A step begun
// before then is carried out under ctx, the whole run's: the end of the
// faults is no reason to leave one half set, and the drain heals them all
// (TestInjectorFinishesAStepAtTheEnd).
func (in *injector) run(ctx, runCtx context.Context, start time.Time) {
	t := time.NewTimer(0)
	defer t.Stop()
	<-t.C
	for _, s := range in.steps() {
		t.Reset(time.Until(start.Add(s.at)))
		select {
		case <-runCtx.Done():
			return
		case <-t.C:
		}
		in.apply(ctx, s)
	}
	<-runCtx.Done()
}

func (in *injector) apply(ctx context.Context, s step) {
	e := in.sched.Events[s.event]
	in.mu.Lock()
	defer in.mu.Unlock()
	if s.end {
		delete(in.active, s.event)
	} else if e.For > 0 {
		in.active[s.event] = e
	}
	switch e.Kind {
	case KillRandom:
		if in.sup != nil {
			in.count(in.payd, e.Kind, in.sup.kill(e.Replica))
		}
		if in.naive != nil {
			in.naive.crash()
			in.contrast[e.Kind]++
		}
		return
	case Pause:
		if in.sup == nil {
			return
		}
		if s.end {
			if c := in.paused[s.event]; c != nil {
				in.sup.resume(e.Replica, c)
				delete(in.paused, s.event)
			}
		} else {
			c := in.sup.pause(e.Replica)
			if c != nil {
				in.paused[s.event] = c
			}
			in.count(in.payd, e.Kind, c != nil)
		}
		return
	}
	if !s.end {
		if in.sup != nil {
			in.payd[e.Kind]++
		}
		if in.naive != nil && e.Kind != DBReset && e.Kind != DBLatency && !info(e.Kind).webhooks {
			in.contrast[e.Kind]++
		}
	}
	switch e.Kind {
	case ProviderReset, ProviderLatency:
		in.setLink(0, in.provider)
	case DBReset, DBLatency:
		if in.db != nil {
			in.setLink(1, []*faultproxy.Proxy{in.db})
		}
	default:
		f := in.composed()
		for _, url := range in.sims {
			if err := setSimFaults(ctx, in.http, url, f); err != nil {
				in.errs = append(in.errs, err.Error())
			}
		}
	}
}

func (in *injector) count(m map[Kind]int, k Kind, applied bool) {
	if applied {
		m[k]++
	} else {
		in.missed[k]++
	}
}

// composed is the simulators' faults with every open window: the
// strongest of each.
func (in *injector) composed() simFaults {
	f := in.base
	for _, e := range in.active {
		switch e.Kind {
		case Provider5xx:
			f.ErrorRate = max(f.ErrorRate, e.Rate)
		case Provider429:
			f.RateLimitRate = max(f.RateLimitRate, e.Rate)
		case ProviderDrop:
			f.DropRate = max(f.DropRate, e.Rate)
		case ProviderHang:
			f.HangRate = max(f.HangRate, e.Rate)
		case ProviderLate:
			f.LateRate = max(f.LateRate, e.Rate)
		case ProviderInFlight:
			f.InFlightRate = max(f.InFlightRate, e.Rate)
		case ProviderOtherAmount:
			f.OtherAmountRate = max(f.OtherAmountRate, e.Rate)
		case WebhookDuplicate:
			f.WebhookDuplicateRate = max(f.WebhookDuplicateRate, e.Rate)
		case WebhookReorder:
			f.WebhookReorder = max(f.WebhookReorder, e.Latency)
		}
	}
	return f
}

// setLink applies the open windows of link class i (0 provider, 1
// database) to its proxies, if they changed.
func (in *injector) setLink(i int, proxies []*faultproxy.Proxy) {
	var l link
	for _, e := range in.active {
		switch {
		case i == 0 && e.Kind == ProviderReset, i == 1 && e.Kind == DBReset:
			l.reset = true
		case i == 0 && e.Kind == ProviderLatency, i == 1 && e.Kind == DBLatency:
			l.latency = max(l.latency, e.Latency)
		}
	}
	if l == in.last[i] {
		return
	}
	in.last[i] = l
	for _, p := range proxies {
		if err := applyLink(p, l); err != nil {
			in.errs = append(in.errs, err.Error())
		}
	}
}

// heal ends every fault: windows closed, proxies healed, paused replicas
// resumed, and the simulators' faults cleared entirely, baseline latency
// included, so the drain is quick.
func (in *injector) heal(ctx context.Context) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	clear(in.active)
	in.last = [2]link{}
	var errs []error
	for _, p := range append(append([]*faultproxy.Proxy{}, in.provider...), in.db) {
		if p != nil {
			if err := p.Heal(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if in.sup != nil {
		for i := range in.sup.replicas {
			in.sup.resume(i, nil)
		}
	}
	for _, url := range in.sims {
		if err := setSimFaults(ctx, in.http, url, simFaults{HangFor: in.base.HangFor}); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("healing the faults: %v", errs)
	}
	return nil
}

func (in *injector) counts() (payd, contrast, missed map[Kind]int, errs []string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	cp := func(m map[Kind]int) map[Kind]int {
		out := map[Kind]int{}
		for k, v := range m {
			out[k] = v
		}
		return out
	}
	return cp(in.payd), cp(in.contrast), cp(in.missed), append([]string(nil), in.errs...)
}
