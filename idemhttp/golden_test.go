package idemhttp_test

import (
	"bytes"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/idemhq/idem/idemhttp"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// TestGoldenReplays pins replayed responses byte for byte: status, every
// header field and the body. Run with -update to accept a change.
func TestGoldenReplays(t *testing.T) {
	tests := []struct {
		name string
		cfg  *idemhttp.Config
		req  req
	}{
		{name: "created", cfg: &idemhttp.Config{ReplayHeaders: []string{"X-Request-Cost"}},
			req: req{keys: []string{`"order-1"`}, body: `{"amount":1999,"currency":"EUR"}`}},
		{name: "server_error", req: req{keys: []string{`"order-2"`}, target: "/charges?status=500"}},
		{name: "no_content", req: req{keys: []string{`"order-3"`}, target: "/charges?status=204"}},
		{name: "empty", req: req{keys: []string{`"order-4"`}, target: "/charges?empty=1"}},
		{name: "too_large", cfg: &idemhttp.Config{MaxResponseBytes: 64},
			req: req{keys: []string{`"order-5"`}, target: "/charges?size=65"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.cfg)
			first := f.do(tt.req)
			replay := f.do(tt.req)
			if f.app.runs.Load() != 1 || replay.Header().Get("Idempotent-Replayed") != "true" {
				t.Fatalf("runs %d, replay header %v: want one run and a replay", f.app.runs.Load(), replay.Header())
			}
			if tt.name != "too_large" && (replay.Code != first.Code || !bytes.Equal(replay.Body.Bytes(), first.Body.Bytes())) {
				t.Errorf("replay %d %q differs from the first response %d %q", replay.Code, replay.Body, first.Code, first.Body)
			}
			got := dump(replay)
			path := filepath.Join("testdata", tt.name+".golden")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("replay differs from %s:\n--- got\n%s\n--- want\n%s", path, got, want)
			}
		})
	}
}

// dump renders a response as status line, sorted header fields and body.
func dump(w *httptest.ResponseRecorder) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%d %s\n", w.Code, http.StatusText(w.Code))
	names := make([]string, 0, len(w.Header()))
	for name := range w.Header() {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		for _, v := range w.Header()[name] {
			fmt.Fprintf(&b, "%s: %s\n", name, v)
		}
	}
	b.WriteString("\n")
	b.Write(w.Body.Bytes())
	return b.Bytes()
}
