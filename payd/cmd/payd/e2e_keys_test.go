package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/idemhq/idem/internal/testenv"
	"github.com/idemhq/idem/payd/internal/simulator"
)

// serveOutput runs payd serve with args and env until it is ready, stops it
// with SIGTERM, and returns everything it wrote, stdout and stderr.
func serveOutput(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^$", "--", "--log-format", "json"}, args...)...)
	cmd.Env = append(append(os.Environ(), childEnv+"=1"), env...)
	var out testenv.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "payd is ready") {
		if time.Now().After(deadline) {
			t.Fatalf("payd not ready after 30s:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("payd exited with %v after SIGTERM:\n%s", err, out.String())
	}
	return out.String()
}

// TestOperatorKeyIsNeverPrinted: a key the operator gives, by flag or by
// PAYD_API_KEY, appears neither on stdout nor in the log; a key payd makes
// is printed, since nobody else knows it.
func TestOperatorKeyIsNeverPrinted(t *testing.T) {
	_, simURL := newSim(t, simulator.Faults{})
	db := filepath.Join(t.TempDir(), "payd.db")
	const secret = "sk_live_operator_secret_0123456789"
	for name, run := range map[string]func() string{
		"flag": func() string { return serveOutput(t, nil, paydArgs(db, simURL, "--api-key", secret)...) },
		"env":  func() string { return serveOutput(t, []string{"PAYD_API_KEY=" + secret}, paydArgs(db, simURL)...) },
	} {
		if out := run(); strings.Contains(out, secret) || !strings.Contains(out, "$PAYD_API_KEY") {
			t.Errorf("%s: the output shows the operator's key, or no placeholder for it:\n%s", name, out)
		}
	}
	if out := serveOutput(t, nil, paydArgs(db, simURL)...); !strings.Contains(out, "dev API key: sk_") {
		t.Errorf("a key payd made is not printed:\n%s", out)
	}
}

// TestOnlyRoleAllStartsASimulator: an API or worker process without
// --provider-url refuses to start, instead of charging on a simulator of
// its own, and says which flag to set.
func TestOnlyRoleAllStartsASimulator(t *testing.T) {
	for _, role := range []string{"api", "worker"} {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second) // a payd that starts serves until killed
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$", "--", "serve", "--role", role,
			"--addr", "127.0.0.1:0", "--sim-addr", "127.0.0.1:0", "--database-url", filepath.Join(t.TempDir(), "payd.db"))
		cmd.Env = append(os.Environ(), childEnv+"=1")
		out, err := cmd.CombinedOutput()
		timedOut := ctx.Err() != nil
		cancel()
		if err == nil || timedOut || !strings.Contains(string(out), "--provider-url") {
			t.Errorf("--role %s without --provider-url = %v:\n%s\nwant a refusal naming --provider-url", role, err, out)
		}
	}
}
