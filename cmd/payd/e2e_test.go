package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/idemhq/idem/cmd/payd/internal/payments"
	"github.com/idemhq/idem/cmd/payd/internal/pgtest"
	"github.com/idemhq/idem/cmd/payd/internal/provider"
	"github.com/idemhq/idem/cmd/payd/internal/simulator"
	"github.com/idemhq/idem/internal/testenv"
)

// The end-to-end tests run payd as real processes: the test binary runs
// itself as payd (childEnv), so tests can kill and pause it.
const childEnv = "PAYD_E2E_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		ctx, stop := signalContext()
		defer stop()
		args := os.Args[slices.Index(os.Args, "--")+1:]
		if err := run(ctx, append([]string{"payd"}, args...), os.Getenv, os.Stdin, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "payd:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	// Some of toxiproxy's own goroutines may outlive the chaos tests'
	// proxies: a stage of a proxied link, pass-through or latency, can be
	// left sending a chunk to a stage that a later fault or the proxy's
	// stop already ended (redisstore's tests meet the latency one). They
	// belong to the harness's proxies, not to payd, and hold no connection.
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/Shopify/toxiproxy/v2/toxics.(*NoopToxic).Pipe"),
		goleak.IgnoreTopFunction("github.com/Shopify/toxiproxy/v2/toxics.(*LatencyToxic).Pipe"))
}

const testKey = "sk_test_e2e"

// proc is a payd process.
type proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	url  string // the API, when the process serves it
	logs *testenv.SyncBuffer
}

// startPayd runs payd with args, and waits until it says it is ready.
func startPayd(t *testing.T, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^$", "--", "--api-key", testKey, "--log-format", "json"}, args...)...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, cmd: cmd, logs: &testenv.SyncBuffer{}}
	cmd.Stderr = p.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGCONT)
		p.cmd.Process.Kill()
		p.cmd.Wait()
	})
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		announced := false
		for sc.Scan() {
			line := sc.Text()
			if announced {
				continue
			}
			if m := regexp.MustCompile(`ready on (http://\S+)`).FindStringSubmatch(line); m != nil {
				ready <- m[1]
				announced = true
			} else if strings.HasPrefix(line, "payd worker running") {
				ready <- ""
				announced = true
			}
		}
		close(ready)
	}()
	select {
	case url, ok := <-ready:
		if !ok {
			t.Fatalf("payd exited before it was ready:\n%s", p.logs)
		}
		p.url = url
	case <-time.After(30 * time.Second):
		t.Fatalf("payd not ready after 30s:\n%s", p.logs)
	}
	return p
}

// wait waits for the process to exit and returns its exit error.
func (p *proc) wait() error {
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		p.t.Fatalf("payd did not exit within 30s:\n%s", p.logs)
		return nil
	}
}

// payd runs a payd command that exits by itself (such as verify), as a
// real process, and returns its output and exit error.
func payd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^$", "--"}, args...)...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// verifyPasses runs payd verify on the database and provider, and fails
// the test unless every invariant holds.
func verifyPasses(t *testing.T, databaseURL, providerURL string) {
	t.Helper()
	out, err := payd(t, "verify", "--database-url", smallPool(databaseURL), "--provider-url", providerURL)
	if err != nil || !strings.Contains(out, "checks passed") {
		t.Fatalf("payd verify: %v\n%s", err, out)
	}
}

// testSim is the provider, in the test process, behind a real server.
func newSim(t *testing.T, faults simulator.Faults) (*simulator.Sim, string) {
	t.Helper()
	sim := simulator.New(&simulator.Config{Seed: 1, Faults: faults})
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(func() { srv.Close(); sim.Close() })
	return sim, srv.URL
}

// eachDatabase runs test on a new SQLite file and a new PostgreSQL
// database, as a --database-url.
func eachDatabase(t *testing.T, test func(t *testing.T, databaseURL string)) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		test(t, filepath.Join(t.TempDir(), "payd.db"))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		test(t, pgtest.Database(t))
	})
}

// fastFlags make payd retry and recover in tests' time.
var fastFlags = []string{"--lease", "2s", "--provider-timeout", "1s", "--retry-base", "50ms", "--shutdown-grace", "2s"}

func paydArgs(databaseURL, providerURL string, extra ...string) []string {
	return append(append([]string{"--addr", "127.0.0.1:0", "--database-url", smallPool(databaseURL), "--provider-url", providerURL}, fastFlags...), extra...)
}

// smallPool caps a PostgreSQL URL's pool at 8 connections: the tests start
// many payd processes at once, beside other packages' tests, and
// PostgreSQL's default allows 100 connections in all.
func smallPool(databaseURL string) string {
	if !strings.HasPrefix(databaseURL, "postgres://") || strings.Contains(databaseURL, "pool_max_conns") {
		return databaseURL
	}
	sep := "?"
	if strings.Contains(databaseURL, "?") {
		sep = "&"
	}
	return databaseURL + sep + "pool_max_conns=8"
}

type response struct {
	status int
	header http.Header
	charge payments.Charge
	body   string
}

// postCharge sends POST /v1/charges with key and body.
func postCharge(c *http.Client, url, key, body string, wait int) (response, error) {
	req, err := http.NewRequest(http.MethodPost, url+"/v1/charges", strings.NewReader(body))
	if err != nil {
		return response{}, err
	}
	req.Header.Set("Authorization", "Bearer "+testKey)
	req.Header.Set("Idempotency-Key", key)
	if wait > 0 {
		req.Header.Set("Prefer", fmt.Sprintf("wait=%d", wait))
	}
	resp, err := c.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	r := response{status: resp.StatusCode, header: resp.Header, body: string(b)}
	json.Unmarshal(b, &r.charge)
	return r, err
}

func getCharge(t *testing.T, url, id string) payments.Charge {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url+"/v1/charges/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+testKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var c payments.Charge
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		t.Fatal(err)
	}
	return c
}

// awaitStatus polls the charge until its status is final.
func awaitFinal(t *testing.T, url, id string) payments.Charge {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c := getCharge(t, url, id)
		if c.Status == payments.StateSucceeded || c.Status == payments.StateFailed {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("charge %s still %s after 30s", id, c.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func charges(sim *simulator.Sim) map[string][]provider.Charge {
	out := map[string][]provider.Charge{}
	for _, c := range sim.Charges() {
		out[c.IdempotencyKey] = append(out[c.IdempotencyKey], c)
	}
	return out
}

const orderBody = `{"amount":1999,"currency":"usd","reference":"order_123"}`

// TestGhostCharge: the client gives up after 20ms while the provider takes
// 100ms, and retries with the same key: one charge, and the retry sees it
// succeed.
func TestGhostCharge(t *testing.T) {
	eachDatabase(t, func(t *testing.T, db string) {
		sim, simURL := newSim(t, simulator.Faults{LatencyMin: 100 * time.Millisecond, LatencyMax: 100 * time.Millisecond})
		p := startPayd(t, paydArgs(db, simURL)...)
		impatient := &http.Client{Timeout: 20 * time.Millisecond}
		if _, err := postCharge(impatient, p.url, "ghost-1", orderBody, 5); err == nil {
			t.Fatal("the impatient client got an answer within 20ms; the test needs it to time out")
		}
		r, err := postCharge(http.DefaultClient, p.url, "ghost-1", orderBody, 5)
		if err != nil {
			t.Fatal(err)
		}
		// Whether the abandoned request's accept committed is a race with
		// the client's timeout: the retry is a replay if it did, the first
		// accept if it did not. Either way there is one charge.
		if r.status != http.StatusOK || r.charge.Status != payments.StateSucceeded {
			t.Fatalf("retry = %d %s, want 200 succeeded", r.status, r.charge.Status)
		}
		if n := len(sim.Charges()); n != 1 {
			t.Fatalf("provider charges = %d, want 1", n)
		}
		verifyPasses(t, db, simURL)
	})
}

// TestDoubleClick: 50 concurrent identical requests make one payment and
// one charge; every answer is the original or a replay of it.
func TestDoubleClick(t *testing.T) {
	eachDatabase(t, func(t *testing.T, db string) {
		sim, simURL := newSim(t, simulator.Faults{})
		p := startPayd(t, paydArgs(db, simURL)...)
		const clicks = 50
		var (
			wg        sync.WaitGroup
			mu        sync.Mutex
			ids       = map[string]int{}
			originals int
		)
		for range clicks {
			wg.Go(func() {
				r, err := postCharge(http.DefaultClient, p.url, "click-1", orderBody, 0)
				if err != nil || r.status != http.StatusAccepted {
					t.Errorf("click: %v %d %s", err, r.status, r.body)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				ids[r.charge.ID]++
				if r.header.Get("Idempotent-Replayed") != "true" {
					originals++
				}
			})
		}
		wg.Wait()
		if len(ids) != 1 || originals != 1 {
			t.Fatalf("%d clicks got %d charge ids and %d originals, want 1 and 1: %v", clicks, len(ids), originals, ids)
		}
		for id := range ids {
			awaitFinal(t, p.url, id)
		}
		if n := len(sim.Charges()); n != 1 {
			t.Fatalf("provider charges = %d, want 1", n)
		}
		verifyPasses(t, db, simURL)
	})
}

// TestDecline: a declined card ends failed with its code, after one
// attempt.
func TestDecline(t *testing.T) {
	eachDatabase(t, func(t *testing.T, db string) {
		_, simURL := newSim(t, simulator.Faults{})
		p := startPayd(t, paydArgs(db, simURL)...)
		r, err := postCharge(http.DefaultClient, p.url, "decline-1", `{"amount":1902,"currency":"usd","reference":"order_9"}`, 10)
		if err != nil {
			t.Fatal(err)
		}
		if r.status != http.StatusOK || r.charge.Status != payments.StateFailed || r.charge.FailureCode == nil || *r.charge.FailureCode != "card_declined" || r.charge.Attempts != 1 {
			t.Fatalf("declined charge = %d %+v, want 200 failed card_declined after 1 attempt", r.status, r.charge)
		}
		verifyPasses(t, db, simURL)
	})
}

// TestFlappingProvider: 500s for three attempts, then success: one charge.
func TestFlappingProvider(t *testing.T) {
	eachDatabase(t, func(t *testing.T, db string) {
		sim, simURL := newSim(t, simulator.Faults{ErrorRate: 1})
		p := startPayd(t, paydArgs(db, simURL)...)
		r, err := postCharge(http.DefaultClient, p.url, "flap-1", orderBody, 0)
		if err != nil || r.status != http.StatusAccepted {
			t.Fatalf("accept = %v %d", err, r.status)
		}
		for sim.Stats().Requests < 3 {
			time.Sleep(10 * time.Millisecond)
		}
		if err := sim.SetFaults(simulator.Faults{}); err != nil {
			t.Fatal(err)
		}
		c := awaitFinal(t, p.url, r.charge.ID)
		if c.Status != payments.StateSucceeded || c.Attempts < 4 || len(sim.Charges()) != 1 {
			t.Fatalf("charge %s after %d attempts with %d provider charges, want succeeded after 4 or more, 1 charge", c.Status, c.Attempts, len(sim.Charges()))
		}
		verifyPasses(t, db, simURL)
	})
}

// TestStaleWorkerPausedPastItsLease stops a payd worker (SIGSTOP) while
// its provider call is in flight, lets another worker take the payment
// over and settle it, then resumes the first: its outcome is refused, and
// the payment keeps the one charge.
func TestStaleWorkerPausedPastItsLease(t *testing.T) {
	eachDatabase(t, func(t *testing.T, db string) {
		sim, simURL := newSim(t, simulator.Faults{LatencyMin: 300 * time.Millisecond, LatencyMax: 300 * time.Millisecond})
		stale := startPayd(t, paydArgs(db, simURL, "--workers", "1")...)
		r, err := postCharge(http.DefaultClient, stale.url, "stale-1", orderBody, 0)
		if err != nil || r.status != http.StatusAccepted {
			t.Fatalf("accept = %v %d", err, r.status)
		}
		for sim.Stats().Requests == 0 {
			time.Sleep(time.Millisecond)
		}
		stale.cmd.Process.Signal(syscall.SIGSTOP) // paused mid-call
		fresh := startPayd(t, paydArgs(db, simURL, "--role", "worker")...)
		_ = fresh
		store := openStore(t, db)
		var p *payments.Payment
		for deadline := time.Now().Add(30 * time.Second); ; {
			p, err = store.Get(t.Context(), "acct_dev", r.charge.ID)
			if err != nil {
				t.Fatal(err)
			}
			if p.Final() {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("not settled by the second worker: %s", p.State)
			}
			time.Sleep(20 * time.Millisecond)
		}
		stale.cmd.Process.Signal(syscall.SIGCONT)
		for deadline := time.Now().Add(10 * time.Second); !strings.Contains(stale.logs.String(), "lease lost"); {
			if time.Now().After(deadline) {
				t.Fatalf("the resumed worker never reported its lease lost:\n%s", stale.logs)
			}
			time.Sleep(20 * time.Millisecond)
		}
		after, _ := store.Get(t.Context(), "acct_dev", r.charge.ID)
		if after.State != payments.StateSucceeded || after.Fence != p.Fence || p.Fence < 2 || len(sim.Charges()) != 1 {
			t.Fatalf("after the stale worker resumed: %s at fence %d (was %d) with %d charges, want succeeded, unchanged, fence ≥ 2, 1 charge",
				after.State, after.Fence, p.Fence, len(sim.Charges()))
		}
		verifyPasses(t, db, simURL)
	})
}

// TestTwoReplicas runs two payd processes on one PostgreSQL database and
// sends charges to both: every payment is charged exactly once.
func TestTwoReplicas(t *testing.T) {
	db := pgtest.Database(t)
	sim, simURL := newSim(t, simulator.Faults{LatencyMax: 5 * time.Millisecond}) // amounts ending 02 or 03 would be declined
	replicas := []*proc{startPayd(t, paydArgs(db, simURL)...), startPayd(t, paydArgs(db, simURL, "--migrate=false")...)}
	const n = 200
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		ids []string
	)
	for i := range n {
		wg.Go(func() {
			r, err := postCharge(http.DefaultClient, replicas[i%2].url, fmt.Sprint("two-", i), fmt.Sprintf(`{"amount":%d,"currency":"eur","reference":"order_%d"}`, 1000+10*i, i), 0)
			if err != nil || r.status != http.StatusAccepted {
				t.Errorf("accept %d: %v %d %s", i, err, r.status, r.body)
				return
			}
			mu.Lock()
			ids = append(ids, r.charge.ID)
			mu.Unlock()
		})
	}
	wg.Wait()
	for _, id := range ids {
		if c := awaitFinal(t, replicas[0].url, id); c.Status != payments.StateSucceeded {
			t.Fatalf("charge %s %s", id, c.Status)
		}
	}
	perKey := charges(sim)
	for key, cs := range perKey {
		if len(cs) != 1 {
			t.Errorf("provider key %s charged %d times", key, len(cs))
		}
	}
	if len(perKey) != n {
		t.Fatalf("%d provider keys charged, want %d", len(perKey), n)
	}
	verifyPasses(t, db, simURL)
}

func openStore(t *testing.T, url string) *payments.Store {
	t.Helper()
	s, err := payments.Open(context.Background(), url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// TestSIGTERMLetsInFlightWorkFinish stops payd while a provider call is in
// flight: the call finishes, its outcome is recorded, and payd exits 0.
func TestSIGTERMLetsInFlightWorkFinish(t *testing.T) {
	db := filepath.Join(t.TempDir(), "payd.db")
	sim, simURL := newSim(t, simulator.Faults{LatencyMin: 500 * time.Millisecond, LatencyMax: 500 * time.Millisecond})
	p := startPayd(t, paydArgs(db, simURL)...)
	r, err := postCharge(http.DefaultClient, p.url, "stop-1", orderBody, 0)
	if err != nil || r.status != http.StatusAccepted {
		t.Fatalf("accept = %v %d", err, r.status)
	}
	for sim.Stats().Requests == 0 {
		time.Sleep(time.Millisecond)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.wait(); err != nil {
		t.Fatalf("payd exited with %v after SIGTERM, want 0:\n%s", err, p.logs)
	}
	got, err := openStore(t, db).Get(t.Context(), "acct_dev", r.charge.ID)
	if err != nil || got.State != payments.StateSucceeded || len(sim.Charges()) != 1 {
		t.Fatalf("after a clean stop: %v %+v with %d charges, want succeeded with 1", err, got, len(sim.Charges()))
	}
	verifyPasses(t, db, simURL)
}

// TestVerifyFindsATamperedPosting: payd verify passes on what payd wrote,
// and once a posting is changed behind its back (the append-only trigger
// disabled first), exits non-zero naming the broken transaction.
func TestVerifyFindsATamperedPosting(t *testing.T) {
	db := pgtest.Database(t)
	_, simURL := newSim(t, simulator.Faults{})
	p := startPayd(t, paydArgs(db, simURL)...)
	if r, err := postCharge(http.DefaultClient, p.url, "tamper-1", orderBody, 10); err != nil || r.charge.Status != payments.StateSucceeded {
		t.Fatalf("charge = %v %+v", err, r)
	}
	verifyPasses(t, db, simURL)

	conn, err := pgx.Connect(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var txn string
	for _, q := range []string{
		`ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_append_only`,
		`UPDATE ledger_entries SET amount = amount - 5 WHERE account = 'provider_clearing' RETURNING txn_id`,
	} {
		if err := conn.QueryRow(t.Context(), q).Scan(&txn); err != nil && !errors.Is(err, pgx.ErrNoRows) {
			t.Fatal(err)
		}
	}
	out, err := payd(t, "verify", "--database-url", smallPool(db), "--provider-url", simURL)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("payd verify after tampering: %v, want exit status 1:\n%s", err, out)
	}
	for _, want := range []string{"journal transaction " + txn + " sums to -5", "FAIL  every balance equals the sum of its postings", "trigger ledger_entries_append_only is missing or disabled"} {
		if !strings.Contains(out, want) {
			t.Errorf("payd verify output lacks %q:\n%s", want, out)
		}
	}
}
