package main

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/idemhq/idem/payd/internal/simulator"
)

// dialAPI opens a raw connection to p's API, closed when the test ends.
func dialAPI(t *testing.T, p *proc) net.Conn {
	t.Helper()
	u, err := url.Parse(p.url)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// closedWithin reports how long conn took to be closed by the server, or
// fails the test if it is still open after limit.
func closedWithin(t *testing.T, conn net.Conn, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	conn.SetReadDeadline(start.Add(limit))
	_, err := io.Copy(io.Discard, conn)
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		t.Fatalf("the connection is still open after %s", limit)
	}
	return time.Since(start)
}

// TestSlowBodyIsCutOff: a client that trickles a body to the
// unauthenticated webhook route, a byte at a time, is cut off by
// --read-timeout instead of holding the connection.
func TestSlowBodyIsCutOff(t *testing.T) {
	_, simURL := newSim(t, simulator.Faults{})
	p := startPayd(t, paydArgs(filepath.Join(t.TempDir(), "payd.db"), simURL, "--webhook-secret", "s", "--read-timeout", "1s")...)
	conn := dialAPI(t, p)
	if _, err := io.WriteString(conn, "POST /v1/provider/webhooks HTTP/1.1\r\nHost: payd\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"); err != nil {
		t.Fatal(err)
	}
	go func() { // a byte every 100ms: 10s for the whole body
		for range 100 {
			time.Sleep(100 * time.Millisecond)
			if _, err := conn.Write([]byte(" ")); err != nil {
				return
			}
		}
	}()
	if took := closedWithin(t, conn, 5*time.Second); took > 3*time.Second {
		t.Fatalf("a slow body held the connection for %s, want it cut at the 1s read timeout", took)
	}
}

// TestIdleConnectionIsClosed: a kept-alive connection with nothing to do
// is closed after --idle-timeout.
func TestIdleConnectionIsClosed(t *testing.T) {
	_, simURL := newSim(t, simulator.Faults{})
	p := startPayd(t, paydArgs(filepath.Join(t.TempDir(), "payd.db"), simURL, "--idle-timeout", "1s")...)
	conn := dialAPI(t, p)
	if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: payd\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /healthz = %v, %v", resp, err)
	}
	checkRaw(t, http.MethodGet, "/healthz", nil, resp)
	if took := closedWithin(t, conn, 5*time.Second); took > 3*time.Second {
		t.Fatalf("an idle connection stayed open %s, want it closed at the 1s idle timeout", took)
	}
}

// TestSecondSignalExitsAtOnce: on SIGTERM, /readyz answers 503 first,
// while the API still serves, for --drain-delay; a second signal then
// exits at once, with status 2.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	_, simURL := newSim(t, simulator.Faults{})
	p := startPayd(t, paydArgs(filepath.Join(t.TempDir(), "payd.db"), simURL, "--drain-delay", "20s")...)
	if r := get(t, p.url+"/readyz"); r.StatusCode != http.StatusOK {
		t.Fatalf("/readyz before the signal = %d, want 200", r.StatusCode)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	deadline := time.Now().Add(5 * time.Second)
	for get(t, p.url+"/readyz").StatusCode != http.StatusServiceUnavailable {
		if time.Now().After(deadline) {
			t.Fatal("/readyz still ready 5s after SIGTERM")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r := get(t, p.url+"/healthz"); r.StatusCode != http.StatusOK {
		t.Fatalf("/healthz while draining = %d, want 200: the API still serves", r.StatusCode)
	}
	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	err := p.wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 || time.Since(start) > 3*time.Second {
		t.Fatalf("after a second SIGTERM: %v after %s, want exit status 2 at once:\n%s", err, time.Since(start), p.logs)
	}
	if !strings.Contains(p.logs.String(), "again: exiting now") {
		t.Errorf("the log does not say why payd exited:\n%s", p.logs)
	}
}

// get sends a GET to url and returns the response, its body read.
func get(t *testing.T, url string) *http.Response {
	t.Helper()
	resp, err := apiClient(t, 0).Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}
