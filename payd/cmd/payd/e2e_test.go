package main

import (
	"bufio"
	"context"
	"encoding/json"
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

	"go.uber.org/goleak"

	"github.com/idemhq/idem/internal/testenv"
	"github.com/idemhq/idem/payd/internal/api"
	"github.com/idemhq/idem/payd/internal/openapitest"
	"github.com/idemhq/idem/payd/internal/payments"
	"github.com/idemhq/idem/payd/internal/pgtest"
	"github.com/idemhq/idem/payd/internal/provider"
	"github.com/idemhq/idem/payd/internal/simulator"
)

// The end-to-end tests run payd as real processes: the test binary runs
// itself as payd (childEnv), so tests can kill and pause it.
const childEnv = "PAYD_E2E_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		ctx, stop := signalContext()
		defer stop()
		args := os.Args[slices.Index(os.Args, "--")+1:]
		if err := run(ctx, append([]string{"payd"}, args...), childGetenv, os.Stdin, os.Stdout, os.Stderr); err != nil {
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

// childGetenv is the environment of payd as the tests run it: the
// process's, except that the admin endpoints listen on a free port unless
// told otherwise, as many payd processes run at once.
func childGetenv(name string) string {
	if v := os.Getenv(name); v != "" || name != envName("admin-addr") {
		return v
	}
	return "127.0.0.1:0"
}

const testKey = "sk_test_e2e_0123456789"

// proc is a payd process.
type proc struct {
	t     *testing.T
	cmd   *exec.Cmd
	url   string // the API, when the process serves it
	admin string // the admin endpoints, when it serves them
	logs  *testenv.SyncBuffer
}

// startPayd runs payd with args and the dev account's key testKey, and
// waits until it says it is ready.
func startPayd(t *testing.T, args ...string) *proc {
	t.Helper()
	return startPaydAs(t, append([]string{"--api-key", testKey}, args...)...)
}

// startPaydAs runs payd with args alone, logging JSON, and waits until
// it says it is ready.
func startPaydAs(t *testing.T, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^$", "--", "--log-format", "json"}, args...)...)
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
			if m := regexp.MustCompile(`^payd admin on (http://\S+)`).FindStringSubmatch(line); m != nil {
				p.admin = m[1] // printed before the ready line, which ready's send publishes
			} else if m := regexp.MustCompile(`ready on (http://\S+)`).FindStringSubmatch(line); m != nil {
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

// loadContract loads payd's OpenAPI document, once: it does not change
// while the tests run.
var loadContract = sync.OnceValues(func() (*openapitest.Checker, error) { return openapitest.New(api.OpenAPI()) })

// apiClient is the client every request to payd's API goes through: it
// fails t for any request or response the OpenAPI document does not
// allow. Timeout zero means none.
func apiClient(t *testing.T, timeout time.Duration) *http.Client {
	t.Helper()
	c, err := loadContract()
	if err != nil {
		t.Fatal(err)
	}
	return c.Client(t, timeout)
}

// postCharge sends POST /v1/charges with key and body, with c (an
// apiClient).
func postCharge(c *http.Client, url, key, body string, wait int) (response, error) {
	req, err := http.NewRequest(http.MethodPost, url+"/v1/charges", strings.NewReader(body))
	if err != nil {
		return response{}, err
	}
	req.Header.Set("Content-Type", "application/json")
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
	resp, err := apiClient(t, 0).Do(req)
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

func openStore(t *testing.T, url string) *payments.Store {
	t.Helper()
	st, err := openStorage(context.Background(), url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.close)
	return st.payments
}
