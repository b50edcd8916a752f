package main

import (
	"bufio"
	"compress/gzip"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/idemhq/idem/internal/testenv"
	"github.com/idemhq/idem/sqlitestore"
)

// chargeSpans are the spans of a charge, by name, that every trace of one
// holds.
var chargeSpans = []string{"POST /v1/charges", "idem.executed", "payd.payment.accept", "payd.payment.attempt", "POST /charges", "payd.payment.settle"}

// exportedSpan is a span as an exporter wrote it.
type exportedSpan struct {
	name, traceID, spanID, parentID, service string
}

// TestTracesOfARealPayd runs payd serve with OTEL_TRACES_EXPORTER=console,otlp
// and an OTLP/HTTP endpoint: a charge's spans, all in the client's trace,
// reach both stdout and the collector, under OTEL_SERVICE_NAME, the last
// of them flushed when payd stops; the worker's attempt is a child of the
// accept, and the provider receives the provider call's traceparent.
func TestTracesOfARealPayd(t *testing.T) {
	sim, collector := newChargeSim(t), newOTLPCollector(t)
	env := append(withoutOTel(), "OTEL_TRACES_EXPORTER=console,otlp", "OTEL_EXPORTER_OTLP_ENDPOINT="+collector.url,
		"OTEL_SERVICE_NAME=payd-e2e")
	p, stdout := startPaydWith(t, env, paydArgs(filepath.Join(t.TempDir(), "payd.db"), sim.url)...)
	tracedCharge(t, p.url)
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.wait(); err != nil {
		t.Fatalf("payd exited with %v, want 0:\n%s", err, p.logs)
	}

	for exporter, spans := range map[string][]exportedSpan{"console": consoleSpans(t, stdout.String()), "otlp": collector.received()} {
		byName := map[string]exportedSpan{}
		for _, s := range spans {
			if s.traceID == clientTraceID {
				byName[s.name] = s
			}
			if s.service != "payd-e2e" {
				t.Errorf("%s: span %s has service.name %q, want payd-e2e", exporter, s.name, s.service)
			}
		}
		for _, name := range chargeSpans {
			if _, ok := byName[name]; !ok {
				t.Errorf("%s: no span %s in the client's trace; got %+v", exporter, name, spans)
			}
		}
		if a, b := byName["payd.payment.attempt"], byName["payd.payment.accept"]; a.parentID != b.spanID {
			t.Errorf("%s: the attempt's parent is %s, want the accept %s", exporter, a.parentID, b.spanID)
		}
		call := byName["POST /charges"]
		if got := sim.traceparents(); len(got) != 1 || got[0] != "00-"+clientTraceID+"-"+call.spanID+"-01" {
			t.Errorf("the provider received %q, want the provider call's traceparent (span %s)", got, call.spanID)
		}
	}
}

// TestRealPaydTracesNothingByDefault runs payd serve with no OTEL_*
// variable: a charge whose request carries a traceparent leaves no trace
// context in its row, none goes to the provider, and no span is written.
func TestRealPaydTracesNothingByDefault(t *testing.T) {
	sim := newChargeSim(t)
	db := filepath.Join(t.TempDir(), "payd.db")
	p, stdout := startPaydWith(t, withoutOTel(), paydArgs(db, sim.url)...)
	tracedCharge(t, p.url)
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.wait(); err != nil {
		t.Fatalf("payd exited with %v, want 0:\n%s", err, p.logs)
	}
	if got := sim.traceparents(); len(got) != 1 || got[0] != "" {
		t.Errorf("the provider received traceparent %q, want none", got)
	}
	if spans := consoleSpans(t, stdout.String()); len(spans) != 0 {
		t.Errorf("payd wrote %d spans with tracing off", len(spans))
	}
	conn, err := sqlitestore.OpenDB(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var all, traced int
	if err := conn.QueryRowContext(t.Context(), `SELECT count(*), count(traceparent) FROM payments`).Scan(&all, &traced); err != nil || all != 1 || traced != 0 {
		t.Fatalf("%d payments, %d with a traceparent (%v): want 1 with none", all, traced, err)
	}
}

// withoutOTel is the test's environment less every OTEL_* variable.
func withoutOTel() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "OTEL_") })
}

// startPaydWith runs payd serve with args in the environment env, and
// waits until it is ready. Unlike startPayd, it keeps all that payd
// writes to stdout, to the last line once payd has exited.
func startPaydWith(t *testing.T, env []string, args ...string) (*proc, *testenv.SyncBuffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^$", "--", "--api-key", testKey, "--log-format", "json"}, args...)...)
	cmd.Env = append(env, childEnv+"=1")
	out := &readyWriter{ready: make(chan string, 1)}
	p := &proc{t: t, cmd: cmd, logs: &testenv.SyncBuffer{}}
	cmd.Stdout, cmd.Stderr = out, p.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		p.cmd.Wait()
	})
	select {
	case p.url = <-out.ready:
	case <-time.After(30 * time.Second):
		t.Fatalf("payd not ready after 30s:\n%s", p.logs)
	}
	return p, &out.SyncBuffer
}

// readyWriter keeps what it is written, and sends the API's URL on ready
// once payd says it is ready.
type readyWriter struct {
	testenv.SyncBuffer
	once  sync.Once
	ready chan string
}

func (w *readyWriter) Write(b []byte) (int, error) {
	n, err := w.SyncBuffer.Write(b)
	if m := regexp.MustCompile(`ready on (http://\S+)`).FindStringSubmatch(w.String()); m != nil {
		w.once.Do(func() { w.ready <- m[1] })
	}
	return n, err
}

// consoleSpans reads the spans the console exporter wrote, a JSON object
// a line, among payd's other output.
func consoleSpans(t *testing.T, stdout string) []exportedSpan {
	t.Helper()
	var out []exportedSpan
	sc := bufio.NewScanner(strings.NewReader(stdout))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if !strings.HasPrefix(sc.Text(), `{"Name":`) {
			continue
		}
		var s struct {
			Name                string
			SpanContext, Parent struct{ TraceID, SpanID string }
			Resource            []struct {
				Key   string
				Value struct{ Value any }
			}
		}
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			t.Fatalf("a console span that is not JSON: %v\n%s", err, sc.Text())
		}
		e := exportedSpan{name: s.Name, traceID: s.SpanContext.TraceID, spanID: s.SpanContext.SpanID, parentID: s.Parent.SpanID}
		for _, a := range s.Resource {
			if a.Key == "service.name" {
				e.service, _ = a.Value.Value.(string)
			}
		}
		out = append(out, e)
	}
	return out
}

// otlpCollector is an OTLP/HTTP collector of traces that keeps the spans
// it receives.
type otlpCollector struct {
	url   string
	mu    sync.Mutex
	spans []exportedSpan
}

func newOTLPCollector(t *testing.T) *otlpCollector {
	t.Helper()
	c := &otlpCollector{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = zr
		}
		b, err := io.ReadAll(body)
		var req coltracepb.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(b, &req)
		}
		if r.URL.Path != "/v1/traces" || err != nil {
			http.Error(w, "not an OTLP trace export", http.StatusBadRequest)
			return
		}
		c.keep(&req)
		resp, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(resp)
	}))
	t.Cleanup(srv.Close)
	c.url = srv.URL
	return c
}

func (c *otlpCollector) keep(req *coltracepb.ExportTraceServiceRequest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		service := ""
		for _, a := range rs.Resource.GetAttributes() {
			if a.Key == "service.name" {
				service = a.Value.GetStringValue()
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				c.spans = append(c.spans, exportedSpan{name: s.Name, traceID: hex.EncodeToString(s.TraceId), spanID: hex.EncodeToString(s.SpanId),
					parentID: hex.EncodeToString(s.ParentSpanId), service: service})
			}
		}
	}
}

func (c *otlpCollector) received() []exportedSpan {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]exportedSpan(nil), c.spans...)
}
