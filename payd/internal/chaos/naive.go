package chaos

import (
	"context"
	crand "crypto/rand"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idemhq/idem/payd/internal/provider"
)

// naive is the contrast: a payment API as it is first written. POST
// /v1/charges calls the provider with a fresh idempotency key (so a retry
// charges again), then inserts the row, whose reference is unique (so a
// second request for the same order fails after it charged). It keeps no
// idempotency record and has no worker, lease or reconciliation. It runs
// in the harness, under the same clients and the same provider faults as
// payd; its process faults are simulated: a crash abandons every request
// in flight, and its failpoints abandon one request after the provider
// call was sent or answered, before the insert.
type naive struct {
	prov *provider.Client
	srv  *http.Server
	url  string
	done chan struct{}

	fpRate        float64
	afterSend     bool
	afterResponse bool

	rngMu sync.Mutex
	rng   *rand.Rand

	mu        sync.Mutex
	rows      map[string]*naiveRow // by reference: the table's unique index
	byID      map[string]*naiveRow
	next      int
	epoch     context.Context // ends at a simulated crash
	crashNow  context.CancelFunc
	crashes   map[Kind]int
	conflicts int

	requests atomic.Int64
}

type naiveRow struct {
	ID               string `json:"id"`
	Reference        string `json:"reference"`
	Amount           int64  `json:"amount"`
	Currency         string `json:"currency"`
	Status           string `json:"status"`
	ProviderChargeID string `json:"provider_charge_id"`
}

// startNaive serves the naive processor on 127.0.0.1, with providerURL as
// its provider.
func startNaive(seed uint64, providerURL string, timeout time.Duration, fpRate float64, afterSend, afterResponse bool) (*naive, error) {
	prov, err := provider.NewClient(providerURL, &provider.ClientConfig{Timeout: timeout})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("naive processor: %w", err)
	}
	n := &naive{
		prov: prov, url: "http://" + ln.Addr().String(), done: make(chan struct{}),
		fpRate: fpRate, afterSend: afterSend, afterResponse: afterResponse,
		rng:  stream(seed, "naive"),
		rows: map[string]*naiveRow{}, byID: map[string]*naiveRow{},
		crashes: map[Kind]int{},
	}
	n.epoch, n.crashNow = context.WithCancel(context.Background())
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/charges", n.create)
	mux.HandleFunc("GET /v1/charges/{id}", n.get)
	n.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(n.done)
		n.srv.Serve(ln)
	}()
	return n, nil
}

func (n *naive) create(w http.ResponseWriter, r *http.Request) {
	n.requests.Add(1)
	var req struct {
		Amount    int64  `json:"amount"`
		Currency  string `json:"currency"`
		Reference string `json:"reference"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Amount <= 0 || req.Reference == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "amount, currency and reference are required"})
		return
	}
	n.mu.Lock()
	n.next++
	id := fmt.Sprintf("nv_%07d", n.next)
	epoch := n.epoch
	n.mu.Unlock()
	n.rngMu.Lock()
	dieAfterSend := n.afterSend && n.rng.Float64() < n.fpRate
	dieAfterResponse := n.afterResponse && n.rng.Float64() < n.fpRate
	n.rngMu.Unlock()

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(epoch, cancel)()
	var sent atomic.Bool
	if dieAfterSend {
		ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) {
			sent.Store(true)
			cancel()
		}})
	}
	// The first design: no idempotency key of its own, so every request,
	// retries included, is a new charge.
	ch, err := n.prov.Charge(ctx, provider.ChargeRequest{
		IdempotencyKey: "naive_" + crand.Text(),
		Amount:         req.Amount,
		Currency:       req.Currency,
		Metadata:       map[string]string{"payment_id": id, "reference": req.Reference},
	})
	switch {
	case sent.Load():
		n.crashed(KillAfterSend)
	case epoch.Err() != nil:
		panic(http.ErrAbortHandler) // the process "crashed" meanwhile: no row, no answer
	case dieAfterResponse:
		n.crashed(KillAfterResponse)
	}
	status := ch.Status
	switch provider.KindOf(err) {
	case 0:
	case provider.KindDeclined:
		status = provider.StatusFailed
	default:
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": "provider: " + err.Error()})
		return
	}
	row := &naiveRow{ID: id, Reference: req.Reference, Amount: req.Amount, Currency: req.Currency, Status: status, ProviderChargeID: ch.ID}
	n.mu.Lock()
	if _, dup := n.rows[req.Reference]; dup {
		n.conflicts++
		n.mu.Unlock()
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "insert: duplicate key value violates unique constraint on reference"})
		return
	}
	n.rows[req.Reference] = row
	n.byID[id] = row
	n.mu.Unlock()
	writeJSON(w, http.StatusCreated, row)
}

func (n *naive) get(w http.ResponseWriter, r *http.Request) {
	n.requests.Add(1)
	n.mu.Lock()
	row, ok := n.byID[r.PathValue("id")]
	var cp naiveRow
	if ok {
		cp = *row
	}
	n.mu.Unlock()
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such charge"})
		return
	}
	writeJSON(w, http.StatusOK, cp)
}

// crashed abandons the request, as a process dying at that point would.
func (n *naive) crashed(k Kind) {
	n.mu.Lock()
	n.crashes[k]++
	n.mu.Unlock()
	panic(http.ErrAbortHandler)
}

// crash abandons every request in flight, before its insert.
func (n *naive) crash() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.crashNow()
	n.epoch, n.crashNow = context.WithCancel(context.Background())
}

func (n *naive) payments() []paymentRow {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]paymentRow, 0, len(n.byID))
	for _, r := range n.byID {
		out = append(out, paymentRow{ID: r.ID, Reference: r.Reference, State: r.Status, ProviderChargeID: r.ProviderChargeID, Amount: r.Amount})
	}
	return out
}

func (n *naive) stats() (crashes map[Kind]int, conflicts int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := map[Kind]int{}
	for k, v := range n.crashes {
		out[k] = v
	}
	return out, n.conflicts
}

func (n *naive) close() {
	n.srv.Close()
	<-n.done
	n.mu.Lock()
	n.crashNow()
	n.mu.Unlock()
	n.prov.CloseIdleConnections()
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // an error means the client is gone
}
