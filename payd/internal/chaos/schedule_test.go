package chaos

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func scheduleConfig() *Config {
	return &Config{Command: []string{"payd"}, Duration: 10 * time.Minute, Replicas: 3}
}

// TestSameSeedSameSchedule: the schedule is a function of the seed and
// the settings alone.
func TestSameSeedSameSchedule(t *testing.T) {
	a, b := NewSchedule(42, scheduleConfig()), NewSchedule(42, scheduleConfig())
	if !reflect.DeepEqual(a, b) || a.Digest() != b.Digest() {
		t.Fatalf("two schedules of seed 42 differ: %s and %s", a.Digest(), b.Digest())
	}
	if c := NewSchedule(43, scheduleConfig()); c.Digest() == a.Digest() {
		t.Fatalf("seeds 42 and 43 give the same schedule %s", a.Digest())
	}
	if len(a.Events) < 400 {
		t.Fatalf("%d events in 10 minutes at one a second on average, want about 600", len(a.Events))
	}
	kinds := map[Kind]int{}
	for i, e := range a.Events {
		kinds[e.Kind]++
		if e.At >= 10*time.Minute || i > 0 && e.At < a.Events[i-1].At {
			t.Fatalf("event %d at %s: out of order or past the run", i, e.At)
		}
		if info(e.Kind).failpoint != "" {
			t.Fatalf("event %d is a failpoint kill (%s): payd draws those itself", i, e.Kind)
		}
		if e.Kind == Pause && e.For <= 3*time.Second {
			t.Fatalf("a pause of %s does not outlast the 3s lease", e.For)
		}
		if info(e.Kind).process && (e.Replica < 0 || e.Replica >= 3) {
			t.Fatalf("event %d hits replica %d of 3", i, e.Replica)
		}
	}
	for _, k := range Kinds() {
		if info(k).failpoint == "" && kinds[k] == 0 {
			t.Errorf("no %s in 10 minutes of faults", k)
		}
	}
}

// TestScheduleKeepsToItsKinds: disabling kinds leaves only the others,
// and the client plans do not depend on the faults.
func TestScheduleKeepsToItsKinds(t *testing.T) {
	cfg := scheduleConfig()
	cfg.Faults = []Kind{KillRandom, Pause}
	for _, e := range NewSchedule(7, cfg).Events {
		if e.Kind != KillRandom && e.Kind != Pause {
			t.Fatalf("schedule of kill-random and pause holds %s", e.Kind)
		}
	}
	cfg.NoFaults = true
	if n := len(NewSchedule(7, cfg).Events); n != 0 {
		t.Fatalf("NoFaults schedule holds %d events", n)
	}
	c, _ := scheduleConfig().resolve()
	for i := range 100 {
		if a, b := newPlan(7, i, &c), newPlan(7, i, &c); a != b {
			t.Fatalf("plan %d differs between two draws: %+v, %+v", i, a, b)
		}
	}
}

func TestParseFaults(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want []Kind
	}{
		{"all", Kinds()},
		{"none", nil},
		{"failpoints", []Kind{KillAfterClaim, KillAfterSend, KillAfterResponse}},
		{"db,pause", []Kind{Pause, DBReset, DBLatency}},
		{"all,-provider,-webhook,-db", []Kind{KillAfterClaim, KillAfterSend, KillAfterResponse, KillRandom, Pause}},
	} {
		got, err := ParseFaults(tc.spec)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("ParseFaults(%q) = %v, %v; want %v", tc.spec, got, err, tc.want)
		}
	}
	if _, err := ParseFaults("all,meteor"); err == nil || !strings.Contains(err.Error(), "meteor") {
		t.Errorf("ParseFaults of an unknown kind: %v", err)
	}
}

// TestScheduleDrawsTheHostileProvider: the late, in-flight and
// other-amount windows are drawn, with their documented parameters.
func TestScheduleDrawsTheHostileProvider(t *testing.T) {
	cfg := scheduleConfig()
	cfg.Faults = []Kind{ProviderLate, ProviderInFlight, ProviderOtherAmount}
	s := NewSchedule(42, cfg)
	counts := s.Count()
	for _, k := range cfg.Faults {
		if counts[k] < 100 {
			t.Errorf("%d %s in 10 minutes of three kinds, want about 200", counts[k], k)
		}
	}
	for _, e := range s.Events {
		var forMin, forMax time.Duration
		var rateMin, rateMax float64
		switch e.Kind {
		case ProviderLate:
			forMin, forMax, rateMin, rateMax = 2*time.Second, 5*time.Second, 0.3, 0.6
		case ProviderInFlight:
			forMin, forMax, rateMin, rateMax = time.Second, 4*time.Second, 1, 1
		case ProviderOtherAmount:
			forMin, forMax, rateMin, rateMax = time.Second, 3*time.Second, 0.05, 0.15
		}
		if e.For < forMin || e.For > forMax || e.Rate < rateMin || e.Rate > rateMax {
			t.Fatalf("%s for %s at rate %g; want %s–%s at %g–%g", e.Kind, e.For, e.Rate, forMin, forMax, rateMin, rateMax)
		}
	}
}

// TestScheduleOfOtherKindsUnchanged: adding kinds moved none of the
// others' draws: a schedule of the kinds that came before them is the one
// they gave (its digest recorded before the late, in-flight and
// other-amount kinds were added).
func TestScheduleOfOtherKindsUnchanged(t *testing.T) {
	cfg := scheduleConfig()
	cfg.Faults = []Kind{KillRandom, Pause, Provider5xx, Provider429, ProviderDrop, ProviderHang, ProviderReset, ProviderLatency,
		DBReset, DBLatency, WebhookDuplicate, WebhookReorder}
	if got, want := NewSchedule(42, cfg).Digest(), "1de61d205328b62c"; got != want {
		t.Fatalf("schedule of seed 42 without the new kinds: digest %s, want %s", got, want)
	}
}

// TestProviderMaxDelay: late executions stay under half payd's bound and
// under 8s, and a bound the drain cannot outlast is refused.
func TestProviderMaxDelay(t *testing.T) {
	for _, tc := range []struct {
		bound, drain time.Duration
		lateMax      time.Duration
		ok           bool
	}{
		{0, 0, 7500 * time.Millisecond, true}, // the defaults: 15s and 3m
		{30 * time.Second, 0, 8 * time.Second, true},
		{4 * time.Second, 0, 2 * time.Second, true},
		{time.Second, 0, 0, false},
		{time.Minute, time.Minute, 0, false},
	} {
		c, err := (&Config{Command: []string{"payd"}, ProviderMaxDelay: tc.bound, DrainTimeout: tc.drain}).resolve()
		if (err == nil) != tc.ok {
			t.Errorf("provider max delay %s, drain %s: error %v; want ok %t", tc.bound, tc.drain, err, tc.ok)
			continue
		}
		if f := baseFaults(&c); tc.ok && (f.LateMin != 500*time.Millisecond || f.LateMax != tc.lateMax) {
			t.Errorf("provider max delay %s: late %s–%s; want 500ms–%s", c.ProviderMaxDelay, f.LateMin, f.LateMax, tc.lateMax)
		}
	}
}

// TestLateNeedsABound: provider-late is left out, with the reason, when
// payd serve takes no --provider-max-delay; the naive processor alone gets
// it whatever payd has.
func TestLateNeedsABound(t *testing.T) {
	all := setting{postgres: true, webhooks: true, payd: true}
	kinds, skipped := applicable(Kinds(), all)
	if slices.Contains(kinds, ProviderLate) || !slices.Contains(kinds, ProviderOtherAmount) || !slices.Contains(kinds, ProviderInFlight) {
		t.Errorf("without --provider-max-delay: %v; want every kind but provider-late", kinds)
	}
	if len(skipped) != 1 || !strings.Contains(skipped[0], "provider-late") || !strings.Contains(skipped[0], "--provider-max-delay") {
		t.Errorf("without --provider-max-delay, skipped %q; want provider-late, saying why", skipped)
	}
	all.maxDelay = true
	if kinds, skipped := applicable(Kinds(), all); !slices.Equal(kinds, Kinds()) || len(skipped) != 0 {
		t.Errorf("with --provider-max-delay: %v, skipped %q; want every kind", kinds, skipped)
	}
	if kinds, _ := applicable(Kinds(), setting{}); !slices.Contains(kinds, ProviderLate) {
		t.Errorf("the naive processor alone: %v; want provider-late among them", kinds)
	}
}
