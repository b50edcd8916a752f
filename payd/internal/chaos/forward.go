package chaos

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"
)

// forwarder is the provider's webhook endpoint: it hands each delivery to
// a live payd replica's POST /v1/provider/webhooks, as a load balancer
// would, and answers with the replica's status (503 when none is up, so
// the provider tries again later).
type forwarder struct {
	url    string
	srv    *http.Server
	done   chan struct{}
	client *http.Client
	pick   func(*rand.Rand) (string, bool)

	mu  sync.Mutex
	rng *rand.Rand
}

func startForwarder(seed uint64, pick func(*rand.Rand) (string, bool)) (*forwarder, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := &forwarder{
		url:    "http://" + ln.Addr().String() + "/webhooks",
		done:   make(chan struct{}),
		client: &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second},
		pick:   pick,
		rng:    stream(seed, "webhooks"),
	}
	f.srv = &http.Server{Handler: http.HandlerFunc(f.forward), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(f.done)
		f.srv.Serve(ln)
	}()
	return f, nil
}

func (f *forwarder) forward(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		http.Error(w, "unreadable", http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	base, ok := f.pick(f.rng)
	f.mu.Unlock()
	if !ok {
		http.Error(w, "no payd replica is up", http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/provider/webhooks", bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	for k, vs := range r.Header {
		switch http.CanonicalHeaderKey(k) {
		case "Connection", "Content-Length", "Host", "Accept-Encoding":
			continue
		}
		req.Header[k] = vs
	}
	resp, err := f.client.Do(req)
	if err != nil {
		http.Error(w, "payd: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	w.WriteHeader(resp.StatusCode)
	w.Write(b)
}

func (f *forwarder) close() {
	f.srv.Close()
	<-f.done
	f.client.CloseIdleConnections()
}
