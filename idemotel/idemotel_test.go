package idemotel_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/idemotel"
	"github.com/idemhq/idem/memstore"
	"github.com/idemhq/idem/observe"
	"github.com/idemhq/idem/store"
)

// rawKey is distinctive, so that a leak is easy to spot.
const rawKey = "order-1234-raw-secret"

// telemetry is an SDK tracer and meter provider that keep what they get.
type telemetry struct {
	spans  *tracetest.SpanRecorder
	reader *sdkmetric.ManualReader
	config *idemotel.Config
}

func newTelemetry(t *testing.T, storeName string) telemetry {
	t.Helper()
	spans := tracetest.NewSpanRecorder()
	reader := sdkmetric.NewManualReader()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	return telemetry{spans, reader, &idemotel.Config{TracerProvider: tp, MeterProvider: mp, Store: storeName}}
}

// newEngine returns an engine on s that reports to cfg.
func newEngine(t *testing.T, s store.Store, cfg *idemotel.Config) *idem.Engine {
	t.Helper()
	observer, err := idemotel.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e, err := idem.New(s, &idem.Config{Observer: observer, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// failingComplete is a memstore that cannot record outcomes: every call
// through it ends in observe.NotRecorded.
type failingComplete struct{ store.Store }

func (failingComplete) Complete(context.Context, store.Lease, []byte) error {
	return errors.New("disk full")
}

func ok(context.Context) ([]byte, error) { return []byte("ok"), nil }

func spanNamed(t *testing.T, spans []sdktrace.ReadOnlySpan, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	for _, s := range spans {
		if s.Name() == name {
			return s
		}
	}
	t.Fatalf("no span %q", name)
	return nil
}

func TestReplayedSpanIsChildOfCaller(t *testing.T) {
	tel := newTelemetry(t, "memstore")
	e := newEngine(t, memstore.New(), tel.config)
	ctx, caller := tel.config.TracerProvider.Tracer("test").Start(t.Context(), "caller")
	for range 2 {
		if _, err := e.Run(ctx, rawKey, ok, nil); err != nil {
			t.Fatal(err)
		}
	}
	caller.End()
	spans := tel.spans.Ended()

	digest := sha256.Sum256([]byte(rawKey))
	wantStoreKey := "default/" + hex.EncodeToString(digest[:])
	for _, tc := range []struct {
		name      string
		wantFence int64 // 0: no idem.fence
	}{
		{"idem.executed", 1},
		// The store reports no fence with a recorded outcome.
		{"idem.replayed", 0},
	} {
		s := spanNamed(t, spans, tc.name)
		if got, want := s.Parent().TraceID(), caller.SpanContext().TraceID(); got != want {
			t.Errorf("%s: trace id %s, want the caller's %s", tc.name, got, want)
		}
		if got, want := s.Parent().SpanID(), caller.SpanContext().SpanID(); got != want {
			t.Errorf("%s: parent span id %s, want the caller's %s", tc.name, got, want)
		}
		want := map[attribute.Key]attribute.Value{
			"idem.outcome":   attribute.StringValue(strings.TrimPrefix(tc.name, "idem.")),
			"idem.store":     attribute.StringValue("memstore"),
			"idem.store_key": attribute.StringValue(wantStoreKey),
		}
		if tc.wantFence != 0 {
			want["idem.fence"] = attribute.Int64Value(tc.wantFence)
		}
		got := map[attribute.Key]attribute.Value{}
		for _, kv := range s.Attributes() {
			got[kv.Key] = kv.Value
		}
		if len(got) != len(want) {
			t.Errorf("%s: attributes %v, want %v", tc.name, got, want)
		}
		for k, w := range want {
			if g, found := got[k]; !found || g != w {
				t.Errorf("%s: %s = %v, want %v", tc.name, k, g.String(), w.String())
			}
		}
		if s.Status().Code != codes.Unset {
			t.Errorf("%s: status %v, want unset", tc.name, s.Status())
		}
	}
	for _, s := range spans {
		texts := []string{s.Name(), s.Status().Description}
		for _, kv := range s.Attributes() {
			texts = append(texts, string(kv.Key), kv.Value.String())
		}
		for _, text := range texts {
			if strings.Contains(text, rawKey) {
				t.Errorf("span %s holds the raw key: %q", s.Name(), text)
			}
		}
	}
}

func TestSpanCoversTheDuration(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tel := newTelemetry(t, "")
		e := newEngine(t, memstore.New(), tel.config)
		slow := func(context.Context) ([]byte, error) {
			time.Sleep(50 * time.Millisecond)
			return nil, nil
		}
		for range 2 { // executed, then replayed
			if _, err := e.Run(t.Context(), rawKey, slow, nil); err != nil {
				t.Fatal(err)
			}
		}
		s := spanNamed(t, tel.spans.Ended(), "idem.executed")
		if got, want := s.EndTime().Sub(s.StartTime()), 50*time.Millisecond; got != want {
			t.Errorf("span lasts %s, want fn's %s", got, want)
		}
		if got, want := s.EndTime(), time.Now(); !got.Equal(want) {
			t.Errorf("span ends at %s, want the event's time %s", got, want)
		}

		var rm metricdata.ResourceMetrics
		if err := tel.reader.Collect(t.Context(), &rm); err != nil {
			t.Fatal(err)
		}
		// The replay has no duration, so only the executed call is there.
		h := find(t, rm, "idem.duration").(metricdata.Histogram[float64])
		if len(h.DataPoints) != 1 || h.DataPoints[0].Count != 1 || h.DataPoints[0].Sum != 0.05 {
			t.Fatalf("idem.duration = %+v, want one sample of 0.05s", h.DataPoints)
		}
		if got := checkMetricAttrs(t, "idem.duration", h.DataPoints[0].Attributes, ""); got != "executed" {
			t.Errorf("idem.duration sample has idem.outcome=%s, want executed", got)
		}
	})
}

func TestErrorKindsMarkSpans(t *testing.T) {
	tel := newTelemetry(t, "")
	observer, err := idemotel.New(tel.config)
	if err != nil {
		t.Fatal(err)
	}
	storeErr := &idem.StoreError{Op: "complete", Key: "default/00", Executed: true, Err: errors.New("disk full")}
	for _, tc := range []struct {
		ev       observe.Event
		wantCode codes.Code
		wantDesc string
	}{
		{observe.Event{Kind: observe.NotRecorded, Err: storeErr}, codes.Error, storeErr.Error()},
		{observe.Event{Kind: observe.StoreError, Err: errors.New("connection refused")}, codes.Error, "connection refused"},
		{observe.Event{Kind: observe.StoreError}, codes.Error, "store_error"},
		{observe.Event{Kind: observe.LeaseLost, Err: errors.New("fn: " + rawKey)}, codes.Error, "lease lost while fn ran; its outcome was discarded"},
		{observe.Event{Kind: observe.Executed, Err: errors.New("declined")}, codes.Unset, ""},
		{observe.Event{Kind: observe.Released, Err: errors.New("transient")}, codes.Unset, ""},
		{observe.Event{Kind: observe.Mismatch}, codes.Unset, ""},
		{observe.Event{Kind: observe.InFlight}, codes.Unset, ""},
	} {
		tel.spans.Reset()
		observer(t.Context(), tc.ev)
		spans := tel.spans.Ended()
		if len(spans) != 1 {
			t.Fatalf("%s: %d spans, want 1", tc.ev.Kind, len(spans))
		}
		got := spans[0].Status()
		if got.Code != tc.wantCode || got.Description != tc.wantDesc {
			t.Errorf("%s: status %v %q, want %v %q", tc.ev.Kind, got.Code, got.Description, tc.wantCode, tc.wantDesc)
		}
	}
}

func TestMetrics(t *testing.T) {
	tel := newTelemetry(t, "memstore")
	e := newEngine(t, memstore.New(), tel.config)
	for range 2 {
		if _, err := e.Run(t.Context(), rawKey, ok, nil); err != nil {
			t.Fatal(err)
		}
	}
	broken := newEngine(t, failingComplete{memstore.New()}, tel.config)
	if _, err := broken.Run(t.Context(), rawKey, ok, nil); !errors.Is(err, idem.ErrNotRecorded) {
		t.Fatalf("got %v, want ErrNotRecorded", err)
	}

	var rm metricdata.ResourceMetrics
	if err := tel.reader.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	events := sums(t, rm, "idem.events")
	for outcome, want := range map[string]int64{"executed": 1, "replayed": 1, "not_recorded": 1} {
		if got := events[outcome]; got != want {
			t.Errorf("idem.events{idem.outcome=%s} = %d, want %d", outcome, got, want)
		}
	}
	if len(events) != 3 {
		t.Errorf("idem.events = %v, want executed, replayed and not_recorded only", events)
	}
	if got := sums(t, rm, "idem.not_recorded")[""]; got != 1 {
		t.Errorf("idem.not_recorded = %d, want 1", got)
	}
}

// checkMetricAttrs fails t unless attrs holds idem.store=store (none if
// "") and at most idem.outcome besides, and returns the outcome.
func checkMetricAttrs(t *testing.T, name string, attrs attribute.Set, store string) string {
	t.Helper()
	for _, kv := range attrs.ToSlice() {
		if kv.Key != "idem.outcome" && kv.Key != "idem.store" {
			t.Errorf("%s: attribute %s=%s, want only idem.outcome and idem.store", name, kv.Key, kv.Value.String())
		}
	}
	if v, _ := attrs.Value("idem.store"); v.AsString() != store {
		t.Errorf("%s: idem.store = %q, want %q", name, v.AsString(), store)
	}
	v, _ := attrs.Value("idem.outcome")
	return v.AsString()
}

func find(t *testing.T, rm metricdata.ResourceMetrics, name string) metricdata.Aggregation {
	t.Helper()
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == name {
				return m.Data
			}
		}
	}
	t.Fatalf("no metric %s", name)
	return nil
}

// sums returns the values of the counter name by outcome ("" if none).
func sums(t *testing.T, rm metricdata.ResourceMetrics, name string) map[string]int64 {
	t.Helper()
	sum, ok := find(t, rm, name).(metricdata.Sum[int64])
	if !ok || !sum.IsMonotonic {
		t.Fatalf("%s is %T, want a counter", name, find(t, rm, name))
	}
	got := map[string]int64{}
	for _, dp := range sum.DataPoints {
		got[checkMetricAttrs(t, name, dp.Attributes, "memstore")] += dp.Value
	}
	return got
}

// TestNilConfigUsesGlobalProviders sets the global providers, so it must
// not run in parallel.
func TestNilConfigUsesGlobalProviders(t *testing.T) {
	tel := newTelemetry(t, "memstore")
	otel.SetTracerProvider(tel.config.TracerProvider)
	otel.SetMeterProvider(tel.config.MeterProvider)
	t.Cleanup(func() {
		otel.SetTracerProvider(tracenoop.NewTracerProvider())
		otel.SetMeterProvider(metricnoop.NewMeterProvider())
	})
	observer, err := idemotel.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	observer(t.Context(), observe.Event{Kind: observe.Replayed, Key: "default/00"})

	if got := len(tel.spans.Ended()); got != 1 {
		t.Errorf("global tracer provider got %d spans, want 1", got)
	}
	var rm metricdata.ResourceMetrics
	if err := tel.reader.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	if len(rm.ScopeMetrics) == 0 {
		t.Errorf("global meter provider got no metrics")
	}
}

func TestConcurrentCalls(t *testing.T) {
	tel := newTelemetry(t, "memstore")
	e := newEngine(t, memstore.New(), tel.config)
	const keys, callers = 10, 8
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for k := range keys {
				if _, err := e.Run(t.Context(), fmt.Sprint("order-", k), ok, nil); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()

	var rm metricdata.ResourceMetrics
	if err := tel.reader.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	if got := sums(t, rm, "idem.events")["executed"]; got != keys {
		t.Errorf("idem.events{idem.outcome=executed} = %d, want %d", got, keys)
	}
	if got := len(tel.spans.Ended()); got < callers*keys {
		t.Errorf("%d spans, want at least one per call (%d)", got, callers*keys)
	}
}
