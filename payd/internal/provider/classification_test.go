package provider_test

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/idemhq/idem/payd/internal/provider"
	"github.com/idemhq/idem/payd/internal/simulator"
)

// classification is a row of the classification: a call to a server and
// what the client makes of its answer.
type classification struct {
	name    string
	server  func(*testing.T) classEnv
	prepare func(context.Context, *provider.Client) // on a simulator without faults
	call    func(context.Context, *provider.Client) error
	timeout time.Duration

	kind     provider.Kind // 0: success
	code     string
	status   int
	notFound bool
	cause    error // errors.Is(err, cause)
	charges  int   // at the simulator, after the call
}

// classEnv is the server a row calls: a simulator, or a raw listener.
type classEnv struct {
	sim  *simulator.Sim
	base string
}

func simWith(f simulator.Faults) func(*testing.T) classEnv {
	return func(t *testing.T) classEnv {
		sim, base := startSim(t, f)
		return classEnv{sim, base}
	}
}

func raw(handle func(net.Conn)) func(*testing.T) classEnv {
	return func(t *testing.T) classEnv { return classEnv{base: rawServer(t, handle)} }
}

// TestClassification runs every row of the classification against the
// simulator, or a raw listener for what no HTTP server does on purpose.
func TestClassification(t *testing.T) {
	for _, tt := range append(providerAnswers(), lostAndOddAnswers()...) {
		t.Run(tt.name, func(t *testing.T) { checkClassification(t, tt) })
	}
}

// checkClassification makes tt's call and checks what the client made of
// the answer.
func checkClassification(t *testing.T, tt classification) {
	e := tt.server(t)
	if tt.prepare != nil {
		tt.prepare(t.Context(), newClient(t, e.base, nil))
	}
	c := newClient(t, e.base, &provider.ClientConfig{Timeout: tt.timeout})
	err := tt.call(t.Context(), c)

	if tt.notFound {
		if !errors.Is(err, provider.ErrNotFound) {
			t.Fatalf("err = %v, want ErrNotFound", err)
		}
		return
	}
	if got := provider.KindOf(err); got != tt.kind {
		t.Fatalf("kind %v (%v), want %v", got, err, tt.kind)
	}
	if err != nil {
		pe, ok := errors.AsType[*provider.Error](err)
		if !ok || pe.Code != tt.code || pe.Status != tt.status {
			t.Errorf("err = %#v, want code %q, status %d", err, tt.code, tt.status)
		}
		if errors.Is(err, provider.ErrNotFound) {
			t.Errorf("err = %v is ErrNotFound", err)
		}
	}
	if tt.cause != nil && !errors.Is(err, tt.cause) {
		t.Errorf("err = %v, want it to wrap %v", err, tt.cause)
	}
	if e.sim != nil {
		if got := len(e.sim.Charges()); got != tt.charges {
			t.Errorf("%d charges at the simulator, want %d", got, tt.charges)
		}
	}
}

// providerAnswers are the rows of the provider's own answers: success,
// declines, retryable errors, refusals and lookups that find nothing.
func providerAnswers() []classification {
	return []classification{
		{name: "2xx succeeds", server: simWith(simulator.Faults{}), call: charge("k", 1000), charges: 1},
		{name: "402 card_declined", server: simWith(simulator.Faults{}), call: charge("k", 1002),
			kind: provider.KindDeclined, code: "card_declined", status: 402, charges: 1},
		{name: "402 insufficient_funds", server: simWith(simulator.Faults{}), call: charge("k", 1003),
			kind: provider.KindDeclined, code: "insufficient_funds", status: 402, charges: 1},
		{name: "500 is retryable, nothing charged", server: simWith(simulator.Faults{ErrorRate: 1}), call: charge("k", 1000),
			kind: provider.KindRetryable, code: "server_error", status: 500},
		{name: "429 is retryable, nothing charged", server: simWith(simulator.Faults{RateLimitRate: 1}), call: charge("k", 1000),
			kind: provider.KindRetryable, code: "rate_limited", status: 429},
		{name: "400 idempotency_mismatch is unknown: the key holds another charge", server: simWith(simulator.Faults{}),
			prepare: func(ctx context.Context, c *provider.Client) { charge("k", 999)(ctx, c) },
			call:    charge("k", 1000), kind: provider.KindUnknown, code: "idempotency_mismatch", status: 400, charges: 1},
		{name: "400 amount_too_large is refused", server: simWith(simulator.Faults{}),
			prepare: func(ctx context.Context, c *provider.Client) { charge("k", 1000)(ctx, c) },
			call: func(ctx context.Context, c *provider.Client) error {
				ch, err := c.ChargeByKey(ctx, "k")
				if err != nil {
					return err
				}
				_, err = c.Refund(ctx, provider.RefundRequest{IdempotencyKey: "r", ChargeID: ch.ID, Amount: 1001})
				return err
			},
			kind: provider.KindDeclined, code: "amount_too_large", status: 400, charges: 1},
		{name: "404 refund of an unknown charge is refused", server: simWith(simulator.Faults{}),
			call: func(ctx context.Context, c *provider.Client) error {
				_, err := c.Refund(ctx, provider.RefundRequest{IdempotencyKey: "r", ChargeID: "ch_nope", Amount: 1})
				return err
			},
			kind: provider.KindDeclined, code: "charge_not_found", status: 404},
		{name: "404 lookup is ErrNotFound", server: simWith(simulator.Faults{}),
			call: func(ctx context.Context, c *provider.Client) error {
				_, err := c.ChargeByKey(ctx, "nope")
				return err
			},
			notFound: true},
		{name: "404 refund lookup is ErrNotFound", server: simWith(simulator.Faults{}),
			call: func(ctx context.Context, c *provider.Client) error {
				_, err := c.RefundByKey(ctx, "nope")
				return err
			},
			notFound: true},
		{name: "404 lookup on a wrong path is not ErrNotFound",
			server: func(t *testing.T) classEnv {
				_, base := startSim(t, simulator.Faults{})
				return classEnv{base: base + "/v9"}
			},
			call: func(ctx context.Context, c *provider.Client) error {
				_, err := c.ChargeByKey(ctx, "nope")
				return err
			},
			kind: provider.KindDeclined, code: "no_route", status: 404},
		{name: "404 lookup without a provider error is not ErrNotFound",
			server: raw(answer("HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot here\n")),
			call: func(ctx context.Context, c *provider.Client) error {
				_, err := c.ChargeByKey(ctx, "nope")
				return err
			},
			kind: provider.KindDeclined, status: 404},
	}
}

// lostAndOddAnswers are the rows of answers lost, cut short or never
// given, and of answers no provider means to give.
func lostAndOddAnswers() []classification {
	return []classification{
		{name: "ghost charge: dropped after charging is unknown", server: simWith(simulator.Faults{DropAfterChargeRate: 1}),
			call: charge("k", 1000), kind: provider.KindUnknown, charges: 1},
		{name: "hang past the timeout is unknown", server: simWith(simulator.Faults{HangRate: 1}),
			call: charge("k", 1000), timeout: 100 * time.Millisecond,
			kind: provider.KindUnknown, cause: context.DeadlineExceeded, charges: 1},
		{name: "connection refused is retryable",
			server: func(t *testing.T) classEnv { return classEnv{base: refusedURL(t)} },
			call:   charge("k", 1000), kind: provider.KindRetryable, cause: syscall.ECONNREFUSED},
		{name: "closed on accept is unknown", server: raw(func(net.Conn) {}),
			call: charge("k", 1000), kind: provider.KindUnknown},
		{name: "reset after reading the request is unknown",
			server: raw(func(c net.Conn) {
				readRequest(c)
				c.(*net.TCPConn).SetLinger(0) // close with RST
			}),
			call: charge("k", 1000), kind: provider.KindUnknown},
		{name: "EOF after reading the request is unknown", server: raw(readRequest),
			call: charge("k", 1000), kind: provider.KindUnknown},
		{name: "no response is unknown",
			server: raw(func(c net.Conn) {
				readRequest(c)
				io.Copy(io.Discard, c) // until the client gives up
			}),
			call: charge("k", 1000), timeout: 100 * time.Millisecond, kind: provider.KindUnknown, cause: context.DeadlineExceeded},
		{name: "a body cut short is unknown",
			server: raw(answer("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"id\":\"ch_1\"")),
			call:   charge("k", 1000), kind: provider.KindUnknown, status: 200, cause: io.ErrUnexpectedEOF},
		{name: "an unreadable 200 is unknown",
			server: raw(answer("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")),
			call:   charge("k", 1000), kind: provider.KindUnknown, status: 200},
		{name: "a 402 without a declined charge is unknown",
			server: raw(answer("HTTP/1.1 402 Payment Required\r\nContent-Length: 2\r\n\r\n{}")),
			call:   charge("k", 1000), kind: provider.KindUnknown, status: 402},
		{name: "a redirect is not followed, and unknown",
			server: raw(answer("HTTP/1.1 307 Temporary Redirect\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n")),
			call:   charge("k", 1000), kind: provider.KindUnknown, status: 307},
		{name: "a proxy's 502 is retryable",
			server: raw(answer("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 3\r\n\r\nbad")),
			call:   charge("k", 1000), kind: provider.KindRetryable, status: 502},
		{name: "409 (the key in flight) is unknown",
			server: raw(answer("HTTP/1.1 409 Conflict\r\nContent-Length: 36\r\n\r\n{\"error\":{\"code\":\"key_in_use\"}}     ")),
			call:   charge("k", 1000), kind: provider.KindUnknown, code: "key_in_use", status: 409},
		{name: "no idempotency key: refused before sending", server: simWith(simulator.Faults{}),
			call: charge("", 1000), kind: provider.KindDeclined, code: "invalid_request"},
	}
}
