//go:build !chaos

package main

import (
	"bytes"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// TestProductionBuildHasNoFailpoints: built without the chaos tag, payd
// links neither the failpoints nor the chaos harness nor the fault proxy
// (nor toxiproxy and zerolog, which the proxy brings), serve has no
// --failpoints flag (so PAYD_FAILPOINTS is never read), and chaos says how
// to get a build that has it.
func TestProductionBuildHasNoFailpoints(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, forbidden := range []string{"/internal/failpoint", "/internal/chaos", "/internal/faultproxy", "toxiproxy", "zerolog"} {
		if strings.Contains(string(out), forbidden) {
			t.Errorf("a production payd links %s", forbidden)
		}
	}

	getenv := func(string) string { return "" }
	err = run(t.Context(), []string{"payd", "serve", "--failpoints", "after-claim=1"}, getenv, nil, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "-failpoints") {
		t.Errorf("serve --failpoints = %v, want an undefined flag", err)
	}
	var help bytes.Buffer
	if err := run(t.Context(), []string{"payd", "serve", "--help"}, getenv, nil, &help, &help); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(help.String(), "failpoint") {
		t.Errorf("serve --help offers failpoints:\n%s", help.String())
	}
	err = run(t.Context(), []string{"payd", "chaos"}, getenv, nil, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "-tags chaos") {
		t.Errorf("chaos = %v, want the build command that has it", err)
	}
}
