package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/idemhq/idem/payd/internal/payments"
	"github.com/idemhq/idem/payd/internal/provider"
	"github.com/idemhq/idem/payd/internal/simulator"
)

// TestEmbeddedProviderSurvivesARestart: an embedded payd (SQLite, the
// built-in simulator) stopped by SIGTERM or killed by SIGKILL and started
// again on the same file finds the provider as it left it. The provider
// ids made after the restart are new ones, no webhook event is refused as
// a repeat, payd verify passes, and a reconciliation run finds nothing to
// disagree with.
func TestEmbeddedProviderSurvivesARestart(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			db := filepath.Join(t.TempDir(), "payd.db")
			args := append([]string{"--addr", "127.0.0.1:0", "--sim-addr", "127.0.0.1:0", "--database-url", db}, fastFlags...)

			first := startPayd(t, args...)
			firstSim := embeddedProvider(t, first)
			paid := chargesSucceed(t, first.url, "before", 3)
			refundSettles(t, first.url, paid[0], 500)
			webhooksDelivered(t, firstSim, 4)
			before := providerCharges(t, firstSim)
			first.cmd.Process.Signal(sig)
			if err := first.wait(); err != nil && sig == syscall.SIGTERM {
				t.Fatalf("payd exited with %v after SIGTERM, want 0:\n%s", err, first.logs)
			}
			if _, err := os.Stat(db + ".provider"); err != nil {
				t.Errorf("no simulator state beside the database: %v", err)
			}

			second := startPayd(t, args...)
			secondSim := embeddedProvider(t, second)
			paid = append(paid, chargesSucceed(t, second.url, "after", 3)...)
			refundSettles(t, second.url, paid[4], 700)
			webhooksDelivered(t, secondSim, 4)

			after := providerCharges(t, secondSim)
			if len(after) != 6 || !slices.Equal(ids(after[:3]), ids(before)) || len(slices.Compact(slices.Sorted(slices.Values(ids(after))))) != 6 {
				t.Errorf("the provider's charges after the restart are %v, want the 3 from before it (%v) and 3 new ids", ids(after), ids(before))
			}
			for _, p := range []*proc{first, second} {
				for _, bad := range []string{"event id seen before with a different body", "webhook abandoned"} {
					if strings.Contains(p.logs.String(), bad) {
						t.Errorf("a payd logged %q:\n%s", bad, p.logs)
					}
				}
			}
			verifyPasses(t, db, secondSim)
			reconciliationAgrees(t, second.url, db, secondSim)
		})
	}
}

// TestSecondEmbeddedPaydRefusesToStart: a second embedded payd on a
// database refuses to start a simulator of its own on the first one's
// state, which would charge elsewhere under the same ids, and says which
// flag to set instead.
func TestSecondEmbeddedPaydRefusesToStart(t *testing.T) {
	db := filepath.Join(t.TempDir(), "payd.db")
	args := []string{"--addr", "127.0.0.1:0", "--sim-addr", "127.0.0.1:0", "--database-url", db}
	startPayd(t, args...)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second) // a payd that starts serves until killed
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], append([]string{"-test.run=^$", "--", "serve"}, args...)...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err == nil || ctx.Err() != nil || !strings.Contains(string(out), "--provider-url") || !strings.Contains(string(out), "in use") {
		t.Errorf("a second embedded payd on the database = %v:\n%s\nwant a refusal naming the state file in use and --provider-url", err, out)
	}
}

// TestSimStateFileDefaults: the built-in simulator's state goes where
// --sim-state says, or else beside a SQLite database, or in the working
// directory with PostgreSQL.
func TestSimStateFileDefaults(t *testing.T) {
	for _, tt := range []struct{ databaseURL, simState, want string }{
		{"payd.db", "", "payd.db.provider"},
		{"/var/lib/payd/payd.db", "", "/var/lib/payd/payd.db.provider"},
		{"postgres://payd@db/payd", "", "payd.provider"},
		{"postgresql://payd@db/payd", "", "payd.provider"},
		{"payd.db", "/srv/provider.state", "/srv/provider.state"},
	} {
		if got := simStateFile(serveConfig{databaseURL: tt.databaseURL, simState: tt.simState}); got != tt.want {
			t.Errorf("--database-url %s --sim-state %q: state in %q, want %q", tt.databaseURL, tt.simState, got, tt.want)
		}
	}
}

// embeddedProvider returns the URL of p's built-in simulator, from the
// line payd logs just after it says it is ready.
func embeddedProvider(t *testing.T, p *proc) string {
	t.Helper()
	started := regexp.MustCompile(`"msg":"payd: started".*"provider":"(http://[^"]+)"`)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if m := started.FindStringSubmatch(p.logs.String()); m != nil {
			return m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("payd did not log its provider:\n%s", p.logs)
		}
	}
}

// chargesSucceed makes n charges of 19.99 on the API at url, keyed
// prefix-1 to prefix-n, and returns their ids once each has succeeded.
func chargesSucceed(t *testing.T, url, prefix string, n int) []string {
	t.Helper()
	var out []string
	for i := range n {
		r, err := postCharge(apiClient(t, 0), url, fmt.Sprintf("%s-%d", prefix, i+1), orderBody, 10)
		if err != nil || r.status != http.StatusOK || r.charge.Status != payments.StateSucceeded {
			t.Fatalf("charge %s-%d = %v %d %s, want 200 succeeded", prefix, i+1, err, r.status, r.body)
		}
		out = append(out, r.charge.ID)
	}
	return out
}

// refundSettles refunds amount of the charge and waits until the charge
// shows it refunded.
func refundSettles(t *testing.T, url, chargeID string, amount int64) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+"/v1/charges/"+chargeID+"/refunds", strings.NewReader(fmt.Sprintf(`{"amount":%d}`, amount)))
	req.Header.Set("Authorization", "Bearer "+testKey)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "refund-"+chargeID)
	resp, err := apiClient(t, 0).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("refund of %s = %d, want 201", chargeID, resp.StatusCode)
	}
	for deadline := time.Now().Add(30 * time.Second); getCharge(t, url, chargeID).AmountRefunded != amount; {
		if time.Now().After(deadline) {
			t.Fatalf("the refund of %d of %s was not settled within 30s", amount, chargeID)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// webhooksDelivered waits until the simulator at simURL has delivered n
// events, then fails the test if any delivery was refused along the way.
func webhooksDelivered(t *testing.T, simURL string, n int64) {
	t.Helper()
	var s simulator.Stats
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		s = getJSON[simulator.Stats](t, simURL+"/_stats")
		if s.WebhooksDelivered >= n || time.Now().After(deadline) {
			break
		}
	}
	if s.WebhooksDelivered != n || s.WebhookAttempts != n || s.WebhooksAbandoned != 0 {
		t.Errorf("webhooks: %d attempts, %d delivered, %d abandoned; want each of %d events delivered at its first attempt",
			s.WebhookAttempts, s.WebhooksDelivered, s.WebhooksAbandoned, n)
	}
}

func providerCharges(t *testing.T, simURL string) []provider.Charge {
	t.Helper()
	return getJSON[struct{ Data []provider.Charge }](t, simURL+"/charges?limit=1000").Data
}

func ids(charges []provider.Charge) []string {
	var out []string
	for _, c := range charges {
		out = append(out, c.ID)
	}
	return out
}

// reconciliationAgrees runs reconciliation on the database and provider
// now, with no grace for recent work (payd's own runs leave out the last
// minute), and fails the test unless it matches every provider charge and
// refund and payd, asked at url, shows no open mismatch.
func reconciliationAgrees(t *testing.T, url, db, simURL string) {
	t.Helper()
	prov, err := provider.NewClient(simURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer prov.CloseIdleConnections()
	run, err := payments.NewReconciler(openStore(t, db), prov, &payments.ReconcilerConfig{Grace: time.Nanosecond}).RunOnce(t.Context())
	if err != nil || run.ProviderCharges != 6 || run.ProviderRefunds != 2 || run.Matched != 8 || run.Mismatches != 0 {
		t.Fatalf("reconciliation = %+v, %v; want 6 charges and 2 refunds, all matched", run, err)
	}
	req, _ := http.NewRequest(http.MethodGet, url+"/v1/reconciliation", nil)
	req.Header.Set("Authorization", "Bearer "+testKey)
	resp, err := apiClient(t, 0).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		Open []payments.Mismatch `json:"open_mismatches"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || len(got.Open) != 0 {
		t.Errorf("GET /v1/reconciliation: %v, open mismatches %+v; want none", err, got.Open)
	}
}

func getJSON[T any](t *testing.T, url string) T {
	t.Helper()
	var v T
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return v
}
