package observe_test

import (
	"context"
	"slices"
	"testing"

	"github.com/idemhq/idem/observe"
)

// TestAllCallsEveryObserver: each event reaches every observer, in order,
// with the caller's context; nil observers are skipped.
func TestAllCallsEveryObserver(t *testing.T) {
	type marker struct{}
	var got []string
	record := func(name string) func(context.Context, observe.Event) {
		return func(ctx context.Context, ev observe.Event) {
			got = append(got, name+":"+ev.Kind.String()+":"+ctx.Value(marker{}).(string))
		}
	}
	all := observe.All(record("a"), nil, record("b"))
	ctx := context.WithValue(t.Context(), marker{}, "caller")
	all(ctx, observe.Event{Kind: observe.Executed})
	all(ctx, observe.Event{Kind: observe.NotRecorded})
	want := []string{"a:executed:caller", "b:executed:caller", "a:not_recorded:caller", "b:not_recorded:caller"}
	if !slices.Equal(got, want) {
		t.Fatalf("observers saw %v, want %v", got, want)
	}
}

// TestKindNames: every kind has its snake-case name, and an unknown kind
// says so.
func TestKindNames(t *testing.T) {
	want := map[observe.Kind]string{
		observe.Executed: "executed", observe.Replayed: "replayed", observe.Waited: "waited",
		observe.Takeover: "takeover", observe.LeaseLost: "lease_lost", observe.Released: "released",
		observe.Mismatch: "mismatch", observe.InFlight: "in_flight", observe.StoreError: "store_error",
		observe.NotRecorded: "not_recorded", 0: "unknown", 99: "unknown",
	}
	for k, name := range want {
		if got := k.String(); got != name {
			t.Errorf("Kind(%d).String() = %q, want %q", k, got, name)
		}
	}
}
