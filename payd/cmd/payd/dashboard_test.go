package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/idemhq/idem/payd/internal/simulator"
)

// dashboardPath is the Grafana dashboard kept in the repository.
const dashboardPath = "../../dashboards/payd.json"

// panel is what the test reads of a Grafana panel: its queries, and the
// panels of a row.
type panel struct {
	Title   string  `json:"title"`
	Type    string  `json:"type"`
	Panels  []panel `json:"panels"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

// dashboardQueries are the PromQL expressions of every panel of the
// dashboard at path, by panel title.
func dashboardQueries(t *testing.T, path string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []panel `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	out := map[string][]string{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			for _, tg := range p.Targets {
				out[p.Title] = append(out[p.Title], tg.Expr)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
		}
	}
	walk(d.Panels)
	return out
}

var (
	// What is not a metric name: strings, label matchers, ranges and the
	// label lists of by, without, on, ignoring and group_left/right.
	promStrings  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	promMatchers = regexp.MustCompile(`\{[^}]*\}|\[[^\]]*\]`)
	promGroups   = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promName     = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?`)
	promKeywords = []string{"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset", "inf", "nan"}
)

// metricNames are the metric names expr selects: identifiers that are
// neither functions, aggregations, keywords, labels nor strings.
func metricNames(expr string) []string {
	expr = promStrings.ReplaceAllString(expr, `""`)
	expr = promMatchers.ReplaceAllString(expr, " ")
	expr = promGroups.ReplaceAllString(expr, " ")
	var names []string
	for _, m := range promName.FindAllStringSubmatch(expr, -1) {
		name := strings.TrimSpace(m[0])
		if m[1] != "" || slices.Contains(promKeywords, strings.ToLower(name)) {
			continue // a function or aggregation call, or a keyword
		}
		names = append(names, name)
	}
	return names
}

func TestMetricNames(t *testing.T) {
	for expr, want := range map[string][]string{
		`histogram_quantile(0.99, sum by (route, le) (rate(payd_http_request_duration_seconds_bucket[$__rate_interval])))`: {"payd_http_request_duration_seconds_bucket"},
		`sum by (route, status) (rate(payd_http_requests_total{status=~"5..", route!="x y"}[5m]))`:                         {"payd_http_requests_total"},
		`time() - max(payd_reconciliation_last_success_timestamp_seconds)`:                                                 {"payd_reconciliation_last_success_timestamp_seconds"},
		`a_total / on (job) group_left b_total > bool 0 or c`:                                                              {"a_total", "b_total", "c"},
	} {
		if got := metricNames(expr); !slices.Equal(got, want) {
			t.Errorf("metricNames(%s) = %q, want %q", expr, got, want)
		}
	}
}

// exported are the metric families in a Prometheus text exposition, by
// name, with their type.
func exported(text string) map[string]string {
	out := map[string]string{}
	for line := range strings.Lines(text) {
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			out[f[2]] = f[3]
		}
	}
	return out
}

// isExported reports whether name is a series of one of families: a
// family's own name, or a histogram's _bucket, _sum or _count, or a
// summary's _sum or _count.
func isExported(name string, families map[string]string) bool {
	if _, ok := families[name]; ok {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		switch families[base] {
		case "histogram":
			return true
		case "summary":
			return suffix != "_bucket"
		}
	}
	return false
}

// TestDashboardQueriesExportedMetrics: every metric the dashboard's panels
// query is one a real payd serves on its admin address once it has made
// a charge and a reconciliation run, and the dashboard covers what an
// operator watches: requests and latency, errors, the provider,
// accept-to-final, the backlog, settlements, lease losses, the engine's
// outcomes and lost records, and reconciliation.
func TestDashboardQueriesExportedMetrics(t *testing.T) {
	_, simURL := newSim(t, simulator.Faults{})
	p := startPayd(t, paydArgs(filepath.Join(t.TempDir(), "payd.db"), simURL, "--reconcile-interval", "100ms")...)
	if r, err := postCharge(apiClient(t, 0), p.url, "dashboard-1", orderBody, 5); err != nil || r.status != 200 {
		t.Fatalf("charge: %v %+v", err, r)
	}
	var families map[string]string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		text := scrape(t, p.admin, "")
		if families = exported(text); strings.Contains(text, `payd_reconciliation_runs_total{result="ok"}`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no reconciliation run counted in 20s:\n%s", text)
		}
	}

	queried := map[string]bool{}
	for title, exprs := range dashboardQueries(t, dashboardPath) {
		for _, expr := range exprs {
			names := metricNames(expr)
			if len(names) == 0 {
				t.Errorf("panel %q: %q selects no metric", title, expr)
			}
			for _, name := range names {
				queried[name] = true
				if !isExported(name, families) {
					t.Errorf("panel %q queries %s, which payd does not export", title, name)
				}
			}
		}
	}
	for _, want := range []string{
		"payd_http_requests_total", "payd_http_request_duration_seconds_bucket", "payd_provider_call_duration_seconds_bucket",
		"payd_payment_accept_to_final_seconds_bucket", "payd_queue_depth", "payd_settled_total", "payd_lease_losses_total",
		"idem_events_total", "idem_not_recorded_total", "payd_reconciliation_open_mismatches",
	} {
		if !queried[want] {
			t.Errorf("no panel queries %s", want)
		}
	}
}
