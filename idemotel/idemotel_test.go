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

// kindCase is one event of each kind, as the engine reports it, with the
// errors that may carry the caller's raw key (fn's, a release's cause)
// carrying it, and the store's errors not.
type kindCase struct {
	ev observe.Event
	// wantCode and wantDesc are the span's status.
	wantCode codes.Code
	wantDesc string
	// hasDuration: the kind has a duration (doc.go: executed, waited,
	// lease_lost, not_recorded), so the span covers it and idem.duration
	// has a sample.
	hasDuration bool
}

func kindCases() []kindCase {
	const key = "default/2f1e" // a store key: namespace and hash
	fnErr := errors.New("charge declined for " + rawKey)
	claimErr := &idem.StoreError{Op: "claim", Key: key, Err: errors.New("connection refused")}
	completeErr := &idem.StoreError{Op: "complete", Key: key, Executed: true, Err: errors.New("disk full")}
	return []kindCase{
		{ev: observe.Event{Kind: observe.Executed, Key: key, Fence: 7, Duration: 50 * time.Millisecond, Err: fnErr}, hasDuration: true},
		// A replay knows no fence.
		{ev: observe.Event{Kind: observe.Replayed, Key: key}},
		{ev: observe.Event{Kind: observe.Waited, Key: key, Fence: 7, Duration: 2 * time.Second}, hasDuration: true},
		{ev: observe.Event{Kind: observe.Takeover, Key: key, Fence: 8}},
		{ev: observe.Event{Kind: observe.LeaseLost, Key: key, Fence: 7, Duration: 30 * time.Second, Err: fnErr},
			wantCode: codes.Error, wantDesc: "lease lost while fn ran; its outcome was discarded", hasDuration: true},
		{ev: observe.Event{Kind: observe.Released, Key: key, Fence: 7, Err: fmt.Errorf("fn for %s did not return: %w", rawKey, context.Canceled)}},
		{ev: observe.Event{Kind: observe.Mismatch, Key: key}},
		{ev: observe.Event{Kind: observe.InFlight, Key: key, Fence: 7}},
		{ev: observe.Event{Kind: observe.StoreError, Key: key, Err: claimErr}, wantCode: codes.Error, wantDesc: claimErr.Error()},
		{ev: observe.Event{Kind: observe.NotRecorded, Key: key, Fence: 7, Duration: 100 * time.Millisecond, Err: completeErr},
			wantCode: codes.Error, wantDesc: completeErr.Error(), hasDuration: true},
	}
}

// TestEveryKind calls the observer with one event of each kind under a
// caller's span and checks all that doc.go promises of it: one span, a
// child of the caller's, with exactly the documented attributes, no span
// events, a status description only from the store's errors, never the raw
// key; one idem.events for its outcome; idem.not_recorded for not_recorded
// only; an idem.duration sample exactly for the kinds with a duration.
func TestEveryKind(t *testing.T) {
	cases := kindCases()
	if got, want := len(cases), int(observe.NotRecorded); got != want {
		t.Fatalf("%d cases, want one per kind (%d)", got, want)
	}
	for _, tc := range cases {
		t.Run(tc.ev.Kind.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				checkKind(t, tc)
			})
		})
	}
}

func checkKind(t *testing.T, tc kindCase) {
	tel := newTelemetry(t, "memstore")
	observer, err := idemotel.New(tel.config)
	if err != nil {
		t.Fatal(err)
	}
	outcome := tc.ev.Kind.String()
	ctx, caller := tel.config.TracerProvider.Tracer("test").Start(t.Context(), "caller")
	observer(ctx, tc.ev)
	caller.End()
	now := time.Now() // the bubble's clock stands still

	var spans []sdktrace.ReadOnlySpan
	for _, s := range tel.spans.Ended() {
		if s.Name() != "caller" {
			spans = append(spans, s)
		}
	}
	if len(spans) != 1 {
		t.Fatalf("%d spans besides the caller's, want 1", len(spans))
	}
	s := spans[0]
	if got, want := s.Name(), "idem."+outcome; got != want {
		t.Errorf("span name %q, want %q", got, want)
	}

	// The span joins the caller's trace, as the caller's child.
	if got, want := s.SpanContext().TraceID(), caller.SpanContext().TraceID(); got != want {
		t.Errorf("trace id %s, want the caller's %s", got, want)
	}
	if got, want := s.Parent().TraceID(), caller.SpanContext().TraceID(); got != want {
		t.Errorf("parent trace id %s, want the caller's %s", got, want)
	}
	if got, want := s.Parent().SpanID(), caller.SpanContext().SpanID(); got != want {
		t.Errorf("parent span id %s, want the caller's %s", got, want)
	}

	// Exactly the documented attributes.
	want := map[attribute.Key]attribute.Value{
		"idem.outcome":   attribute.StringValue(outcome),
		"idem.store":     attribute.StringValue("memstore"),
		"idem.store_key": attribute.StringValue(tc.ev.Key),
	}
	if tc.ev.Fence != 0 {
		want["idem.fence"] = attribute.Int64Value(tc.ev.Fence)
	}
	got := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		got[kv.Key] = kv.Value
	}
	if len(s.Attributes()) != len(want) || len(got) != len(want) {
		t.Errorf("attributes %v, want %v", s.Attributes(), want)
	}
	for k, w := range want {
		if g, found := got[k]; !found || g != w {
			t.Errorf("%s = %v, want %v", k, g.String(), w.String())
		}
	}
	for k := range got {
		if _, found := want[k]; !found {
			t.Errorf("attribute %s = %v, want none", k, got[k].String())
		}
	}

	// fn's errors are left out: no span events (RecordError adds one), no
	// links, and the status only as documented.
	if evs := s.Events(); len(evs) != 0 || s.DroppedEvents() != 0 {
		t.Errorf("span events %+v, want none", evs)
	}
	if links := s.Links(); len(links) != 0 {
		t.Errorf("span links %+v, want none", links)
	}
	if st := s.Status(); st.Code != tc.wantCode || st.Description != tc.wantDesc {
		t.Errorf("status %v %q, want %v %q", st.Code, st.Description, tc.wantCode, tc.wantDesc)
	}
	texts := []string{s.Name(), s.Status().Description}
	for _, kv := range s.Attributes() {
		texts = append(texts, string(kv.Key), kv.Value.String())
	}
	for _, e := range s.Events() {
		texts = append(texts, e.Name)
		for _, kv := range e.Attributes {
			texts = append(texts, string(kv.Key), kv.Value.String())
		}
	}
	for _, text := range texts {
		if strings.Contains(text, "order-1234") {
			t.Errorf("span holds the raw key: %q", text)
		}
	}

	// The span ends at the event and covers its duration, if any.
	if !s.EndTime().Equal(now) {
		t.Errorf("span ends at %s, want the event's time %s", s.EndTime(), now)
	}
	wantLength := time.Duration(0)
	if tc.hasDuration {
		wantLength = tc.ev.Duration
	}
	if got := s.EndTime().Sub(s.StartTime()); got != wantLength {
		t.Errorf("span lasts %s, want %s", got, wantLength)
	}

	// Metrics.
	var rm metricdata.ResourceMetrics
	if err := tel.reader.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	events := sumsIfAny(t, rm, "idem.events")
	if len(events) != 1 || events[outcome] != 1 {
		t.Errorf("idem.events = %v, want %s: 1 only", events, outcome)
	}
	wantNotRecorded := map[string]int64{}
	if tc.ev.Kind == observe.NotRecorded {
		wantNotRecorded[""] = 1
	}
	if got := sumsIfAny(t, rm, "idem.not_recorded"); fmt.Sprint(got) != fmt.Sprint(wantNotRecorded) {
		t.Errorf("idem.not_recorded = %v, want %v", got, wantNotRecorded)
	}
	var points []metricdata.HistogramDataPoint[float64]
	if h, ok := findIfAny(rm, "idem.duration").(metricdata.Histogram[float64]); ok {
		points = h.DataPoints
	}
	if !tc.hasDuration {
		if len(points) != 0 {
			t.Errorf("idem.duration = %+v, want no sample", points)
		}
		return
	}
	if len(points) != 1 || points[0].Count != 1 || points[0].Sum != tc.ev.Duration.Seconds() {
		t.Fatalf("idem.duration = %+v, want one sample of %vs", points, tc.ev.Duration.Seconds())
	}
	if got := checkMetricAttrs(t, "idem.duration", points[0].Attributes, "memstore"); got != outcome {
		t.Errorf("idem.duration sample has idem.outcome=%s, want %s", got, outcome)
	}
}

// findIfAny returns the data of the metric name, or nil if there is none:
// an instrument that recorded nothing exports nothing.
func findIfAny(rm metricdata.ResourceMetrics, name string) metricdata.Aggregation {
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == name {
				return m.Data
			}
		}
	}
	return nil
}

// sumsIfAny is sums, with no metric meaning no counts.
func sumsIfAny(t *testing.T, rm metricdata.ResourceMetrics, name string) map[string]int64 {
	t.Helper()
	if findIfAny(rm, name) == nil {
		return map[string]int64{}
	}
	return sums(t, rm, name)
}
