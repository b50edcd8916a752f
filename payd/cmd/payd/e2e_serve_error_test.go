//go:build chaos

package main

import (
	"errors"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/idemhq/idem/payd/internal/simulator"
)

// TestServeErrorExits: when the API listener fails for good (here the
// accept-error failpoint, as when the system takes the socket away), a
// real payd serve stops, logs why, and exits non-zero, instead of serving
// nothing while it looks alive.
func TestServeErrorExits(t *testing.T) {
	_, simURL := newSim(t, simulator.Faults{})
	p := startPayd(t, paydArgs(filepath.Join(t.TempDir(), "payd.db"), simURL, "--failpoints", "accept-error=1")...)
	if resp, err := http.Get(p.url + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatalf("GET /healthz = %d through a listener that fails, want the connection closed", resp.StatusCode)
	}
	err := p.wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("payd exited with %v, want exit status 1:\n%s", err, p.logs)
	}
	for _, want := range []string{`"msg":"payd: stopping: the API server failed"`, "failpoint accept-error", "payd: the API server stopped"} {
		if !strings.Contains(p.logs.String(), want) {
			t.Errorf("the log lacks %q:\n%s", want, p.logs)
		}
	}
}
