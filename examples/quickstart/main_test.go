package main

import "testing"

// TestRun checks the walkthrough end to end: it fails if the provider is
// charged more than once per order.
func TestRun(t *testing.T) {
	if err := run(t.Context()); err != nil {
		t.Fatal(err)
	}
}
