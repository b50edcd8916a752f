package simulator_test

import (
	"context"
	"flag"
	"io"
	"math"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/idemhq/idem/payd/internal/simulator"
)

func TestRegisterFlags(t *testing.T) {
	var c simulator.Config
	fs := flag.NewFlagSet("provider-sim", flag.ContinueOnError)
	c.RegisterFlags(fs)

	// One flag per field, but for the two that are not settings.
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	fields := reflect.TypeFor[simulator.Faults]().NumField() + reflect.TypeFor[simulator.Config]().NumField() - 1 /* Faults */ - 2 /* WebhookClient, Logger */
	if n != fields {
		t.Errorf("%d flags for %d fields", n, fields)
	}

	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	defaults := simulator.Config{
		KeyWindow:          simulator.DefaultKeyWindow,
		WebhookMaxAttempts: simulator.DefaultWebhookMaxAttempts,
		Faults:             simulator.Faults{HangFor: simulator.DefaultHangFor},
	}
	if !reflect.DeepEqual(c, defaults) {
		t.Errorf("defaults: %+v, want %+v", c, defaults)
	}

	err := fs.Parse(strings.Fields(`-seed 42 -key-window 1h -webhook-url http://localhost:8080/webhooks
		-webhook-secret s3 -webhook-max-attempts 3 -latency-min 10ms -latency-max 20ms -error-rate 0.1
		-rate-limit-rate 0.2 -decline-rate 0.3 -drop-after-charge-rate 0.4 -hang-rate 0.5 -hang-for 30s
		-late-rate 0.7 -late-min 4s -late-max 5s -in-flight-rate 0.8 -other-amount-rate 0.9
		-webhook-duplicate-rate 0.6 -webhook-reorder 2s -webhook-delay-max 3s -state sim.state`))
	if err != nil {
		t.Fatal(err)
	}
	want := simulator.Config{
		Seed: 42, KeyWindow: time.Hour, WebhookURL: "http://localhost:8080/webhooks", WebhookSecret: "s3", WebhookMaxAttempts: 3, StateFile: "sim.state",
		Faults: simulator.Faults{
			LatencyMin: 10 * time.Millisecond, LatencyMax: 20 * time.Millisecond, ErrorRate: 0.1, RateLimitRate: 0.2,
			DeclineRate: 0.3, DropAfterChargeRate: 0.4, HangRate: 0.5, HangFor: 30 * time.Second,
			LateRate: 0.7, LateMin: 4 * time.Second, LateMax: 5 * time.Second, InFlightRate: 0.8, OtherAmountRate: 0.9,
			WebhookDuplicateRate: 0.6, WebhookReorder: 2 * time.Second, WebhookDelayMax: 3 * time.Second,
		},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("parsed: %+v, want %+v", c, want)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  simulator.Config
		want string // in the error; "" for none
	}{
		{"zero", simulator.Config{}, ""},
		{"rates of 0 and 1", simulator.Config{Faults: simulator.Faults{ErrorRate: 1, HangRate: 0}}, ""},
		{"rate above 1", simulator.Config{Faults: simulator.Faults{DeclineRate: 1.01}}, "DeclineRate"},
		{"negative rate", simulator.Config{Faults: simulator.Faults{WebhookDuplicateRate: -0.5}}, "WebhookDuplicateRate"},
		{"negative duration", simulator.Config{Faults: simulator.Faults{HangFor: -time.Second}}, "HangFor"},
		{"late rate above 1", simulator.Config{Faults: simulator.Faults{LateRate: 1.5}}, "LateRate"},
		{"negative in-flight rate", simulator.Config{Faults: simulator.Faults{InFlightRate: -0.1}}, "InFlightRate"},
		{"NaN other-amount rate", simulator.Config{Faults: simulator.Faults{OtherAmountRate: math.NaN()}}, "OtherAmountRate"},
		{"negative late min", simulator.Config{Faults: simulator.Faults{LateMin: -time.Second}}, "LateMin"},
		{"negative late max", simulator.Config{Faults: simulator.Faults{LateMax: -time.Second}}, "LateMax"},
		{"negative key window", simulator.Config{KeyWindow: -1}, "KeyWindow"},
		{"negative attempts", simulator.Config{WebhookMaxAttempts: -1}, "WebhookMaxAttempts"},
		{"relative webhook URL", simulator.Config{WebhookURL: "/webhooks", WebhookSecret: "s"}, "WebhookURL"},
		{"webhook URL without a secret", simulator.Config{WebhookURL: "http://localhost/"}, "WebhookSecret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate = %v, want an error about %s", err, tt.want)
			}
		})
	}
}

func TestNewPanicsOnAnInvalidConfig(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("New did not panic")
		}
	}()
	simulator.New(&simulator.Config{Faults: simulator.Faults{ErrorRate: 2}})
}

func TestServe(t *testing.T) {
	sim := simulator.New(nil)
	t.Cleanup(sim.Close)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- sim.Serve(ctx, l) }()

	resp, err := http.Post("http://"+l.Addr().String()+"/charges", "application/json", strings.NewReader(`{"amount":100,"currency":"usd"}`))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest { // no Idempotency-Key
		t.Errorf("status %d, want 400", resp.StatusCode)
	}
	http.DefaultClient.CloseIdleConnections()

	cancel()
	if err := <-served; err != nil {
		t.Errorf("Serve = %v, want nil after a shutdown", err)
	}
	if err := sim.ListenAndServe(t.Context(), "127.0.0.1:-1"); err == nil {
		t.Error("ListenAndServe on a bad address: nil error")
	}
}
