package idem_test

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/memstore"
	"github.com/idemhq/idem/observe"
)

type charge struct {
	ID     string
	Amount int64
}

func TestDoReplaysTypedValues(t *testing.T) {
	e := newEngine(t, memstore.New(), nil)
	runs := 0
	fn := func(context.Context) (charge, error) {
		runs++
		return charge{ID: "ch_1", Amount: 1999}, nil
	}
	for i, wantReplayed := range []bool{false, true, true} {
		res, err := idem.Do(t.Context(), e, "order-1", fn, nil)
		if err != nil || res.Value != (charge{"ch_1", 1999}) || res.Replayed != wantReplayed {
			t.Fatalf("call %d: Do = (%+v, %v), want ({ch_1 1999} replayed %t, nil)", i, res, err, wantReplayed)
		}
	}
	if runs != 1 {
		t.Fatalf("fn ran %d times, want 1", runs)
	}
}

func TestDoReplaysErrors(t *testing.T) {
	errDeclined := errors.New("declined")
	e := newEngine(t, memstore.New(), &idem.Config{Errors: map[string]error{"declined": errDeclined}})
	fn := func(context.Context) (charge, error) { return charge{ID: "partial"}, errDeclined }
	for i := range 2 {
		res, err := idem.Do(t.Context(), e, "order-1", fn, nil)
		if !errors.Is(err, errDeclined) || res.Value != (charge{}) {
			t.Fatalf("call %d: Do = (%+v, %v), want the zero value and errDeclined", i, res.Value, err)
		}
	}
}

// TestDoUnencodableValueIsNotRecorded checks that a value the codec
// rejects releases the claim and says the outcome is missing, to the
// caller, the observer and the log alike.
func TestDoUnencodableValueIsNotRecorded(t *testing.T) {
	var (
		logs        bytes.Buffer
		notRecorded int
	)
	e := newEngine(t, memstore.New(), &idem.Config{
		Logger: slog.New(slog.NewJSONHandler(&logs, nil)),
		Observer: func(_ context.Context, ev observe.Event) {
			if ev.Kind == observe.NotRecorded && ev.Fence > 0 && errors.Is(ev.Err, idem.ErrNotRecorded) {
				notRecorded++
			}
		},
	})
	runs := 0
	fn := func(context.Context) (func(), error) { runs++; return func() {}, nil }
	for i := range 2 {
		_, err := idem.Do(t.Context(), e, "order-1", fn, nil)
		if !errors.Is(err, idem.ErrNotRecorded) || !strings.Contains(err.Error(), "encode") {
			t.Fatalf("call %d: Do = %v, want an encode error matching ErrNotRecorded", i, err)
		}
	}
	if runs != 2 {
		t.Fatalf("fn ran %d times, want 2: the claim must be released", runs)
	}
	if notRecorded != 2 {
		t.Errorf("observer saw %d not_recorded events, want one per call", notRecorded)
	}
	if n := strings.Count(logs.String(), `"level":"ERROR"`); n != 2 {
		t.Errorf("log has %d ERROR lines, want one per lost outcome:\n%s", n, logs.String())
	}
}

func TestDoReportsUndecodableRecords(t *testing.T) {
	e := newEngine(t, memstore.New(), nil)
	if _, err := e.Run(t.Context(), "order-1", value("not json"), nil); err != nil {
		t.Fatal(err)
	}
	res, err := idem.Do(t.Context(), e, "order-1", func(context.Context) (charge, error) {
		t.Error("fn ran for a completed key")
		return charge{}, nil
	}, nil)
	if err == nil || !strings.Contains(err.Error(), "decode") || !res.Replayed {
		t.Fatalf("Do over a non-JSON record = (replayed %t, %v), want a replayed decode error", res.Replayed, err)
	}
}

func TestDoUsesTheConfiguredCodec(t *testing.T) {
	gobCodec := idem.Codec{
		Marshal: func(v any) ([]byte, error) {
			var b bytes.Buffer
			err := gob.NewEncoder(&b).Encode(v)
			return b.Bytes(), err
		},
		Unmarshal: func(data []byte, v any) error { return gob.NewDecoder(bytes.NewReader(data)).Decode(v) },
	}
	e := newEngine(t, memstore.New(), &idem.Config{Codec: gobCodec})
	fn := func(context.Context) (charge, error) { return charge{ID: "ch_1", Amount: 5}, nil }
	if _, err := idem.Do(t.Context(), e, "order-1", fn, nil); err != nil {
		t.Fatal(err)
	}
	typed, err := idem.Do(t.Context(), e, "order-1", fn, nil)
	if err != nil || !typed.Replayed || typed.Value != (charge{"ch_1", 5}) {
		t.Fatalf("gob replay = (%+v, %v), want ({ch_1 5} replayed, nil)", typed, err)
	}
	res, _ := e.Run(t.Context(), "order-1", mustNotRun(t), nil)
	if bytes.HasPrefix(res.Value, []byte("{")) {
		t.Fatalf("recorded value %q looks like JSON, want gob", res.Value)
	}
}
