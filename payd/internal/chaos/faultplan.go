package chaos

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// planFaults keeps the kinds of fault that apply to this run, draws the
// schedule of timed faults from the seed and writes it to the work
// directory.
func (r *run) planFaults() error {
	c, rep := &r.cfg, r.rep
	kinds, skipped := applicable(c.Faults, setting{postgres: r.postgres(), webhooks: r.has.webhooks, payd: r.paydOn(), maxDelay: r.has.maxDelay})
	rep.Skipped = append(rep.Skipped, skipped...)
	c.Faults = kinds
	rep.FaultKinds = kinds
	r.sched = NewSchedule(c.Seed, c)
	rep.ScheduleDigest = r.sched.Digest()
	if err := writeSchedule(filepath.Join(r.workDir, "schedule.txt"), r.sched); err != nil {
		return err
	}
	r.progress.say("payd chaos: seed %d, schedule %s (%d timed faults over %s), target %s, %s",
		c.Seed, rep.ScheduleDigest, len(r.sched.Events), c.Duration, c.Target, where(rep))
	return nil
}

// setting is what a run has for faults to break.
type setting struct {
	postgres bool // a network hop to the database
	webhooks bool // payd takes webhooks
	payd     bool // payd is a target
	maxDelay bool // payd serve takes --provider-max-delay
}

// applicable returns the kinds of enabled that apply in setting s, never
// nil (a nil Config.Faults means every kind), and a line for the report
// per reason others do not.
func applicable(enabled []Kind, s setting) (kinds []Kind, skipped []string) {
	kinds = []Kind{}
	var noDB, noHooks, noDelay, off []Kind
	for _, k := range Kinds() {
		switch {
		case !slices.Contains(enabled, k):
			off = append(off, k)
		case info(k).postgres && !s.postgres:
			noDB = append(noDB, k)
		case info(k).webhooks && !s.webhooks:
			noHooks = append(noHooks, k)
		case info(k).late && s.payd && !s.maxDelay:
			noDelay = append(noDelay, k)
		default:
			kinds = append(kinds, k)
		}
	}
	for _, r := range []struct {
		kinds []Kind
		why   string
	}{
		{noDB, "SQLite has no network hop between payd and its database to break"},
		{noHooks, "payd takes no webhooks"},
		// A payd that cannot be told how late the provider may act has
		// no rule for when a "not found" is final: a late execution would
		// test a guarantee it does not claim.
		{noDelay, "payd serve --help lists no --provider-max-delay: this payd cannot be told how late the provider may act on a request"},
		{off, "not enabled (--faults)"},
	} {
		if len(r.kinds) > 0 {
			skipped = append(skipped, fmt.Sprintf("%s: %s", joinKinds(r.kinds), r.why))
		}
	}
	return kinds, skipped
}

func writeSchedule(path string, s Schedule) error {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d, schedule %s, %d events\n", s.Seed, s.Digest(), len(s.Events))
	for _, e := range s.Events {
		b.WriteString(e.String())
		b.WriteString("\n")
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func joinKinds(ks []Kind) string {
	var s []string
	for _, k := range ks {
		s = append(s, string(k))
	}
	return strings.Join(s, ", ")
}
