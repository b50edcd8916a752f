package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestLoggedDurationsAreReadable: payd's logger writes a duration as a Go
// duration string, in JSON and in text, nested in a group too, where
// slog's JSON handler alone writes integer nanoseconds.
func TestLoggedDurationsAreReadable(t *testing.T) {
	var out bytes.Buffer
	newLogger("json", &out).Info("retry", slog.Duration("in", 1500*time.Millisecond),
		slog.Group("lease", slog.Duration("left", 250*time.Microsecond)))
	var entry struct {
		In    any `json:"in"`
		Lease struct {
			Left any `json:"left"`
		} `json:"lease"`
	}
	if err := json.Unmarshal(out.Bytes(), &entry); err != nil {
		t.Fatal(err)
	}
	if entry.In != "1.5s" || entry.Lease.Left != "250µs" {
		t.Errorf("JSON durations in = %v, lease.left = %v, want 1.5s and 250µs: %s", entry.In, entry.Lease.Left, out.String())
	}
	out.Reset()
	newLogger("text", &out).Info("retry", slog.Duration("in", 1500*time.Millisecond))
	if !strings.Contains(out.String(), "in=1.5s") {
		t.Errorf("text duration: %s, want in=1.5s", out.String())
	}
	out.Reset()
	newLogger("json", &out).InfoContext(context.Background(), "no request")
	if strings.Contains(out.String(), "request_id") {
		t.Errorf("a line outside any request has a request_id: %s", out.String())
	}
}
