package simulator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"syscall"
	"testing"

	"go.uber.org/goleak"

	"github.com/idemhq/idem/payd/internal/simulator"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// start serves a new simulator on loopback.
func start(t *testing.T, cfg *simulator.Config) (*simulator.Sim, *api) {
	t.Helper()
	sim := simulator.New(cfg)
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(func() {
		srv.Close()
		sim.Close()
	})
	return sim, &api{t: t, base: srv.URL, client: srv.Client()}
}

// startMem serves a new simulator on an in-memory network, for tests in a
// synctest bubble: goroutines blocked on loopback sockets would keep the
// bubble from ever going idle, and its clock from moving.
func startMem(t *testing.T, cfg *simulator.Config) (*simulator.Sim, *api) {
	t.Helper()
	sim := simulator.New(cfg)
	client := serveMem(t, sim.Handler())
	t.Cleanup(sim.Close)
	return sim, &api{t: t, base: "http://provider.test", client: client}
}

// serveMem serves h on a new in-memory network and returns a client that
// reaches it whatever the URL's host.
func serveMem(t *testing.T, h http.Handler) *http.Client {
	t.Helper()
	n := &memNet{conns: make(chan net.Conn), done: make(chan struct{})}
	srv := &http.Server{Handler: h}
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(n)
	}()
	tr := &http.Transport{DialContext: n.dial}
	t.Cleanup(func() {
		srv.Close()
		<-served
		tr.CloseIdleConnections()
	})
	return &http.Client{Transport: tr}
}

// memNet is a net.Listener whose connections are net.Pipes.
type memNet struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func (n *memNet) Accept() (net.Conn, error) {
	select {
	case c := <-n.conns:
		return c, nil
	case <-n.done:
		return nil, net.ErrClosed
	}
}

func (n *memNet) Close() error {
	n.once.Do(func() { close(n.done) })
	return nil
}

func (n *memNet) Addr() net.Addr { return memAddr{} }

func (n *memNet) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case n.conns <- server:
		return client, nil
	case <-n.done:
		return nil, syscall.ECONNREFUSED
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type memAddr struct{}

func (memAddr) Network() string { return "mem" }
func (memAddr) String() string  { return "mem" }

// api calls a simulator's HTTP API.
type api struct {
	t      *testing.T
	base   string
	client *http.Client
}

// on returns a copy of a that fails t rather than the test a was made for.
func (a *api) on(t *testing.T) *api {
	c := *a
	c.t = t
	return &c
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request; a nil body sends none, a []byte is sent as is and
// anything else as JSON. The test fails if no response arrives.
func (a *api) do(method, path, key string, body any) reply {
	a.t.Helper()
	r, err := a.try(a.t.Context(), method, path, key, body)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

func (a *api) try(ctx context.Context, method, path, key string, body any) (reply, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return reply{}, err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return reply{}, err
	}
	// Without GetBody, http.Transport never sends the request again by
	// itself, as it would on a reused connection that failed: a request
	// with an Idempotency-Key counts as replayable.
	req.GetBody = nil
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: data}, err
}

type chargeReq struct {
	Amount   int64             `json:"amount"`
	Currency string            `json:"currency"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

type refundReq struct {
	Charge   string            `json:"charge"`
	Amount   int64             `json:"amount"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

func (a *api) charge(key string, amount int64) reply {
	a.t.Helper()
	return a.do(http.MethodPost, "/charges", key, chargeReq{Amount: amount, Currency: "usd"})
}

func (a *api) refund(key, charge string, amount int64) reply {
	a.t.Helper()
	return a.do(http.MethodPost, "/refunds", key, refundReq{Charge: charge, Amount: amount})
}

func (a *api) setFaults(f map[string]any) {
	a.t.Helper()
	if r := a.do(http.MethodPost, "/_faults", "", f); r.status != http.StatusOK {
		a.t.Fatalf("POST /_faults: %d %s", r.status, r.body)
	}
}

// as decodes a reply's body.
func as[T any](t *testing.T, r reply) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decoding %d %s: %v", r.status, r.body, err)
	}
	return v
}

// errorCode returns the code of an error reply, "" if it has none.
func errorCode(r reply) string {
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.Unmarshal(r.body, &e)
	return e.Error.Code
}
