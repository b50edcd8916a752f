package provider_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/idemhq/idem/payd/internal/provider"
	"github.com/idemhq/idem/payd/internal/simulator"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startSim serves a new simulator on loopback.
func startSim(t *testing.T, f simulator.Faults) (*simulator.Sim, string) {
	t.Helper()
	sim := simulator.New(&simulator.Config{Faults: f})
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(func() {
		srv.Close()
		sim.Close()
	})
	return sim, srv.URL
}

func newClient(t *testing.T, base string, cfg *provider.ClientConfig) *provider.Client {
	t.Helper()
	c, err := provider.NewClient(base, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// rawServer serves each connection with handle on a loopback listener of
// its own, for the failures no HTTP server would produce on purpose.
func rawServer(t *testing.T, handle func(c net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				handle(c)
			})
		}
	})
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	return "http://" + l.Addr().String()
}

// readRequest reads one request, body and all.
func readRequest(c net.Conn) {
	req, err := http.ReadRequest(bufio.NewReader(c))
	if err == nil {
		io.Copy(io.Discard, req.Body)
	}
}

// answer reads a request and writes raw back, then closes.
func answer(raw string) func(net.Conn) {
	return func(c net.Conn) {
		readRequest(c)
		io.WriteString(c, raw)
	}
}

// refusedURL is an address nothing listens on.
func refusedURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	return "http://" + l.Addr().String()
}

func charge(key string, amount int64) func(context.Context, *provider.Client) error {
	return func(ctx context.Context, c *provider.Client) error {
		_, err := c.Charge(ctx, provider.ChargeRequest{IdempotencyKey: key, Amount: amount, Currency: "usd"})
		return err
	}
}

// TestGhostCharge: the simulator charges and drops the response; the call
// is unknown; a retry with the same key finds the same charge, not a
// second one.
func TestGhostCharge(t *testing.T) {
	sim, base := startSim(t, simulator.Faults{DropAfterChargeRate: 1})
	c := newClient(t, base, nil)
	req := provider.ChargeRequest{IdempotencyKey: "pay_1", Amount: 1999, Currency: "usd", Metadata: map[string]string{"payment_id": "pay_1"}}

	_, err := c.Charge(t.Context(), req)
	if provider.KindOf(err) != provider.KindUnknown {
		t.Fatalf("err = %v, want KindUnknown", err)
	}
	charges := sim.Charges()
	if len(charges) != 1 {
		t.Fatalf("%d charges at the simulator, want the ghost", len(charges))
	}

	if err := sim.SetFaults(simulator.Faults{}); err != nil {
		t.Fatal(err)
	}
	byKey, err := c.ChargeByKey(t.Context(), "pay_1")
	if err != nil || byKey.ID != charges[0].ID {
		t.Fatalf("lookup = %+v, %v; want %s", byKey, err, charges[0].ID)
	}
	ch, err := c.Charge(t.Context(), req)
	if err != nil || ch.ID != charges[0].ID || ch.Metadata["payment_id"] != "pay_1" {
		t.Fatalf("retry = %+v, %v; want %s", ch, err, charges[0].ID)
	}
	if got := len(sim.Charges()); got != 1 {
		t.Errorf("%d charges after the retry, want 1", got)
	}
}

// TestNoResendOnAReusedConnection: http.Transport would send a POST with
// an Idempotency-Key again by itself when a reused connection fails. The
// client must see the ghost charge, and send one request.
func TestNoResendOnAReusedConnection(t *testing.T) {
	sim, base := startSim(t, simulator.Faults{})
	var written atomic.Int32
	c := newClient(t, base, &provider.ClientConfig{OnRequestWritten: func() { written.Add(1) }})
	if _, err := c.ChargeByKey(t.Context(), "warm-up"); !errors.Is(err, provider.ErrNotFound) {
		t.Fatal(err) // leaves an idle connection for the charge to reuse
	}
	if err := sim.SetFaults(simulator.Faults{DropAfterChargeRate: 1}); err != nil {
		t.Fatal(err)
	}
	_, err := c.Charge(t.Context(), provider.ChargeRequest{IdempotencyKey: "k", Amount: 1000, Currency: "usd"})
	if provider.KindOf(err) != provider.KindUnknown {
		t.Fatalf("err = %v, want KindUnknown", err)
	}
	if got := sim.Stats().Requests; got != 2 {
		t.Errorf("%d requests at the simulator, want 2 (the lookup and one charge)", got)
	}
	if got := written.Load(); got != 1 {
		t.Errorf("OnRequestWritten called %d times, want 1", got)
	}
}

// TestOnRequestWritten: the hook fires once the request is written and
// before the response, for charges and refunds only, and never when no
// connection was made.
func TestOnRequestWritten(t *testing.T) {
	t.Run("before the response", func(t *testing.T) {
		release := make(chan struct{})
		base := rawServer(t, func(c net.Conn) {
			readRequest(c)
			<-release
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n"+
				`{"id":"ch_1","status":"succeeded","x":"y"}`)
		})
		c := newClient(t, base, &provider.ClientConfig{OnRequestWritten: func() { close(release) }})
		ch, err := c.Charge(t.Context(), provider.ChargeRequest{IdempotencyKey: "k", Amount: 1000, Currency: "usd"})
		if err != nil || ch.ID != "ch_1" {
			t.Fatalf("Charge = %+v, %v", ch, err) // a hook not called would have hung
		}
	})

	t.Run("which calls", func(t *testing.T) {
		_, base := startSim(t, simulator.Faults{})
		var n atomic.Int32
		cfg := &provider.ClientConfig{OnRequestWritten: func() { n.Add(1) }}
		c := newClient(t, base, cfg)
		ctx := t.Context()
		steps := []struct {
			name string
			call func() error
			want int32
		}{
			{"charge", func() error { return charge("k", 1000)(ctx, c) }, 1},
			{"declined charge", func() error { charge("d", 1002)(ctx, c); return nil }, 2},
			{"lookup", func() error { _, err := c.ChargeByKey(ctx, "k"); return err }, 2},
			{"list", func() error { _, err := provider.Collect(c.Charges(ctx, time.Time{}, time.Time{})); return err }, 2},
			{"refund", func() error {
				ch, _ := c.ChargeByKey(ctx, "k")
				_, err := c.Refund(ctx, provider.RefundRequest{IdempotencyKey: "r", ChargeID: ch.ID, Amount: 1})
				return err
			}, 3},
			{"refused connection", func() error {
				_ = charge("k", 1000)(ctx, newClient(t, refusedURL(t), cfg))
				return nil
			}, 3},
		}
		for _, s := range steps {
			if err := s.call(); err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
			if got := n.Load(); got != s.want {
				t.Fatalf("after %s: called %d times, want %d", s.name, got, s.want)
			}
		}
	})
}

func TestRoundTrip(t *testing.T) {
	sim := simulator.New(nil)
	srv := httptest.NewServer(http.StripPrefix("/provider", sim.Handler()))
	t.Cleanup(func() {
		srv.Close()
		sim.Close()
	})
	var sent atomic.Int32
	hc := &http.Client{Transport: roundTripper(func(r *http.Request) (*http.Response, error) {
		sent.Add(1)
		return http.DefaultTransport.RoundTrip(r)
	})}
	t.Cleanup(http.DefaultClient.CloseIdleConnections) // hc's transport is the default one
	c := newClient(t, srv.URL+"/provider/", &provider.ClientConfig{HTTPClient: hc})
	ctx := t.Context()

	ch, err := c.Charge(ctx, provider.ChargeRequest{IdempotencyKey: "pay_1", Amount: 2500, Currency: "EUR",
		Metadata: map[string]string{"payment_id": "pay_1", "reference": "order-7"}})
	if err != nil || ch.Amount != 2500 || ch.Currency != "eur" || ch.Status != provider.StatusSucceeded || ch.Metadata["reference"] != "order-7" {
		t.Fatalf("Charge = %+v, %v", ch, err)
	}
	if again, err := c.Charge(ctx, provider.ChargeRequest{IdempotencyKey: "pay_1", Amount: 2500, Currency: "eur"}); err != nil || again.ID != ch.ID {
		t.Fatalf("same key = %+v, %v; want %s", again, err, ch.ID)
	}
	declined, err := c.Charge(ctx, provider.ChargeRequest{IdempotencyKey: "pay_2", Amount: 1002, Currency: "usd"})
	if provider.KindOf(err) != provider.KindDeclined || declined.ID == "" || declined.Status != provider.StatusFailed {
		t.Fatalf("declined Charge = %+v, %v; want the failed charge and KindDeclined", declined, err)
	}

	all, err := provider.Collect(c.Charges(ctx, time.Time{}, time.Time{}))
	if err != nil || len(all) != 2 || all[0].ID != ch.ID || all[1].ID != declined.ID {
		t.Fatalf("Charges = %+v, %v", all, err)
	}
	if got, err := provider.Collect(c.Charges(ctx, declined.Created, time.Time{})); err != nil || len(got) != 1 || got[0].ID != declined.ID {
		t.Errorf("Charges from the second = %+v, %v", got, err)
	}
	if got, err := provider.Collect(c.Charges(ctx, time.Time{}, declined.Created)); err != nil || len(got) != 1 || got[0].ID != ch.ID {
		t.Errorf("Charges before the second = %+v, %v", got, err)
	}

	ref, err := c.Refund(ctx, provider.RefundRequest{IdempotencyKey: "ref_1", ChargeID: ch.ID, Amount: 500})
	if err != nil || ref.ChargeID != ch.ID || ref.Amount != 500 || ref.Status != provider.StatusSucceeded {
		t.Fatalf("Refund = %+v, %v", ref, err)
	}
	if got, err := c.RefundByKey(ctx, "ref_1"); err != nil || got.ID != ref.ID || got.Amount != ref.Amount {
		t.Errorf("RefundByKey = %+v, %v; want %+v", got, err, ref)
	}
	if got, err := provider.Collect(c.Refunds(ctx, time.Time{}, time.Time{})); err != nil || len(got) != 1 || got[0].ID != ref.ID {
		t.Errorf("Refunds = %+v, %v", got, err)
	}
	if got, err := c.ChargeByKey(ctx, "pay_1"); err != nil || got.AmountRefunded != 500 {
		t.Errorf("ChargeByKey after the refund = %+v, %v", got, err)
	}
	if sent.Load() == 0 {
		t.Error("the configured HTTPClient was not used")
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestNewClient(t *testing.T) {
	for _, bad := range []string{"", "localhost:8080", "ftp://provider.test", "http://", "/charges", "http://[::1"} {
		if _, err := provider.NewClient(bad, nil); err == nil {
			t.Errorf("NewClient(%q): nil error", bad)
		}
	}
	if _, err := provider.NewClient("http://provider.test", &provider.ClientConfig{Timeout: -time.Second}); err == nil {
		t.Error("negative Timeout: nil error")
	}
	if _, err := provider.NewClient("https://provider.test/v1", nil); err != nil {
		t.Errorf("NewClient: %v", err)
	}
}

// TestListingThatDoesNotAdvance: a provider that says it has more and
// sends the same page again, or none, ends the listing with an error; it
// is never read without end (which kept a reconciliation run from ever
// returning).
func TestListingThatDoesNotAdvance(t *testing.T) {
	for name, page := range map[string]string{
		"the same page": `{"data":[{"id":"ch_1","idempotency_key":"k","amount":1,"currency":"usd","status":"succeeded"}],"has_more":true}`,
		"no page":       `{"data":[],"has_more":true}`,
	} {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.Write([]byte(page))
			}))
			defer srv.Close()
			c := newClient(t, srv.URL, nil)
			n := 0
			for _, err := range c.Charges(t.Context(), time.Time{}, time.Time{}) {
				if err != nil {
					if provider.KindOf(err) != provider.KindUnknown {
						t.Fatalf("err %v, want a provider error", err)
					}
					return
				}
				if n++; n > 10 {
					t.Fatalf("%d charges from a provider that repeats one page, want the listing ended", n)
				}
			}
			t.Fatal("the listing ended with no error")
		})
	}
}
