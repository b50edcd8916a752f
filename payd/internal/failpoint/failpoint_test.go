//go:build chaos

package failpoint

import (
	"slices"
	"testing"
)

var points = []string{"after-claim", "after-send", "after-response"}

func TestParse(t *testing.T) {
	for _, bad := range []string{"after-claim", "after-claim=2", "nowhere=0.5", "after-send=x"} {
		if _, err := Parse(bad, 1, points); err == nil {
			t.Errorf("Parse(%q) = nil error, want one", bad)
		}
	}
	s, err := Parse(" after-claim=1, after-send=0 ", 1, points)
	if err != nil {
		t.Fatal(err)
	}
	var fired []string
	s.Action = func(p string) { fired = append(fired, p) }
	for _, p := range points {
		s.Hit(p)
	}
	if !slices.Equal(fired, []string{"after-claim"}) {
		t.Fatalf("fired %v, want only after-claim", fired)
	}
	var disabled *Set
	disabled.Hit("after-claim") // must not panic
}

// TestSameSeedSameFirings: the odds are drawn from the seed, so a run can
// be repeated.
func TestSameSeedSameFirings(t *testing.T) {
	firings := func() []int {
		s, err := Parse("after-claim=0.3", 42, points)
		if err != nil {
			t.Fatal(err)
		}
		var out []int
		for i := range 100 {
			s.Action = func(string) { out = append(out, i) }
			s.Hit("after-claim")
		}
		return out
	}
	a, b := firings(), firings()
	if len(a) == 0 || !slices.Equal(a, b) {
		t.Fatalf("two runs with one seed fired at %v and %v", a, b)
	}
}
