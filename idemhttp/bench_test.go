package idemhttp_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/idemhttp"
	"github.com/idemhq/idem/internal/floorbench"
	"github.com/idemhq/idem/memstore"
)

// The benchmarks time the middleware against its floor, the bare handler,
// in the same run, interleaved in chunks so that noise on a shared machine
// hits both alike, and report the ratio as x-bare.

// benchResponse is what both the bare and the protected handler write.
var benchResponse = []byte(`{"id":"ch_1","object":"charge","amount":1999,"currency":"eur","status":"succeeded"}`)

// bare is the floor: a handler that reads its body and writes the response.
func bare(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Location", "/charges/ch_1")
	w.WriteHeader(http.StatusCreated)
	w.Write(benchResponse)
}

// sink is a reusable ResponseWriter that keeps nothing, so neither side
// pays for a recorder.
type sink struct {
	h      http.Header
	status int
}

func (s *sink) Header() http.Header         { return s.h }
func (s *sink) WriteHeader(code int)        { s.status = code }
func (s *sink) Write(b []byte) (int, error) { return len(b), nil }

// benchRequest is a POST whose body can be rewound.
type benchRequest struct {
	r    *http.Request
	body *bytes.Reader
}

func newBenchRequest(key string) *benchRequest {
	payload := []byte(`{"amount":1999,"currency":"eur","source":"tok_visa","description":"order 1234"}`)
	br := &benchRequest{body: bytes.NewReader(payload)}
	r, err := http.NewRequest(http.MethodPost, "http://api.example/charges", br.body)
	if err != nil {
		panic(err)
	}
	r.Header.Set("X-User", "alice")
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Idempotency-Key", key)
	br.r = r
	return br
}

func (br *benchRequest) serve(h http.Handler, w *sink) {
	br.body.Seek(0, io.SeekStart)
	clear(w.h)
	w.status = 0
	h.ServeHTTP(w, br.r)
}

// compare measures op against the bare handler (internal/floorbench):
// x-bare is the middleware's cost as a multiple of the bare handler's.
func compare(b *testing.B, op, bare func(i int)) {
	b.Helper()
	b.ReportAllocs()
	floorbench.Compare(b, floorbench.Options{},
		func(i int) error { op(i); return nil },
		floorbench.Floor{Name: "bare", Op: func(i int) error { bare(i); return nil }})
}

func benchMiddleware(b *testing.B) http.Handler {
	// Unbounded: "first" makes a new key per operation, b.N of them.
	engine, err := idem.New(memstore.NewWithLimits(memstore.Limits{MaxRecords: -1, MaxBytes: -1}), nil)
	if err != nil {
		b.Fatal(err)
	}
	mw, err := idemhttp.Middleware(engine, userPrincipal, nil)
	if err != nil {
		b.Fatal(err)
	}
	return mw(http.HandlerFunc(bare))
}

// BenchmarkMiddleware: "replay" answers a recorded key, "first" runs the
// handler under a new key and records its response. The allocations
// reported are the middleware's and the floor's together.
func BenchmarkMiddleware(b *testing.B) {
	b.Run("replay", func(b *testing.B) {
		h := benchMiddleware(b)
		floor := http.HandlerFunc(bare)
		const keys = 1024
		reqs := make([]*benchRequest, keys)
		w := &sink{h: make(http.Header)}
		for i := range reqs {
			reqs[i] = newBenchRequest(`"order-` + strconv.Itoa(i) + `"`)
			reqs[i].serve(h, w)
		}
		floorReq := newBenchRequest(`"order-0"`)
		compare(b,
			func(i int) {
				reqs[i%keys].serve(h, w)
				if w.status != http.StatusCreated {
					b.Fatalf("status %d", w.status)
				}
			},
			func(int) { floorReq.serve(floor, w) })
	})
	b.Run("first", func(b *testing.B) {
		h := benchMiddleware(b)
		floor := http.HandlerFunc(bare)
		reqs := make([]*benchRequest, b.N)
		for i := range reqs {
			reqs[i] = newBenchRequest(`"order-` + strconv.Itoa(i) + `"`)
		}
		floorReq := newBenchRequest(`"order-0"`)
		w := &sink{h: make(http.Header)}
		compare(b,
			func(i int) {
				reqs[i].serve(h, w)
				if w.status != http.StatusCreated || w.h.Get("Idempotent-Replayed") != "" {
					b.Fatalf("status %d %v, want a first execution", w.status, w.h)
				}
			},
			func(int) { floorReq.serve(floor, w) })
	})
}

// BenchmarkMiddlewareServed is BenchmarkMiddleware through real servers on
// loopback, with a keep-alive client: the cost a client sees. The floor is
// the bare handler on its own server.
func BenchmarkMiddlewareServed(b *testing.B) {
	serve := func(b *testing.B, h http.Handler) string {
		srv := httptest.NewServer(h)
		b.Cleanup(srv.Close)
		return srv.URL
	}
	transport := &http.Transport{MaxIdleConnsPerHost: 4}
	b.Cleanup(transport.CloseIdleConnections)
	client := &http.Client{Transport: transport}
	post := func(url, key string) {
		r, err := http.NewRequest(http.MethodPost, url+"/charges", strings.NewReader(`{"amount":1999,"currency":"eur","source":"tok_visa","description":"order 1234"}`))
		if err != nil {
			b.Fatal(err)
		}
		r.Header.Set("X-User", "alice")
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Idempotency-Key", key)
		resp, err := client.Do(r)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	b.Run("replay", func(b *testing.B) {
		protected := serve(b, benchMiddleware(b))
		floor := serve(b, http.HandlerFunc(bare))
		const keys = 1024
		names := make([]string, keys)
		for i := range names {
			names[i] = `"order-` + strconv.Itoa(i) + `"`
			post(protected, names[i])
		}
		compare(b, func(i int) { post(protected, names[i%keys]) }, func(i int) { post(floor, names[i%keys]) })
	})
	b.Run("first", func(b *testing.B) {
		protected := serve(b, benchMiddleware(b))
		floor := serve(b, http.HandlerFunc(bare))
		names := make([]string, b.N)
		for i := range names {
			names[i] = `"order-` + strconv.Itoa(i) + `"`
		}
		compare(b, func(i int) { post(protected, names[i]) }, func(i int) { post(floor, names[i]) })
	})
}
