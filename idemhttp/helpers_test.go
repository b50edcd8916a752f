package idemhttp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/idemhttp"
	"github.com/idemhq/idem/internal/testenv"
	"github.com/idemhq/idem/memstore"
	"github.com/idemhq/idem/store"
)

// spyStore wraps a store, counts its calls and fails them on demand.
type spyStore struct {
	store.Store
	claims, completes, releases atomic.Int64
	failClaim, failComplete     atomic.Bool
}

var errStoreDown = errors.New("store down")

func (s *spyStore) Claim(ctx context.Context, p store.ClaimParams) (store.ClaimResult, error) {
	s.claims.Add(1)
	if s.failClaim.Load() {
		return store.ClaimResult{}, errStoreDown
	}
	return s.Store.Claim(ctx, p)
}

func (s *spyStore) Complete(ctx context.Context, l store.Lease, outcome []byte) error {
	s.completes.Add(1)
	if s.failComplete.Load() {
		return errStoreDown
	}
	return s.Store.Complete(ctx, l, outcome)
}

func (s *spyStore) Release(ctx context.Context, l store.Lease) error {
	s.releases.Add(1)
	return s.Store.Release(ctx, l)
}

// userPrincipal names the principal by the X-User request header, standing
// in for what an authentication middleware would provide. No header: not
// authenticated.
func userPrincipal(r *http.Request) (string, error) {
	u := r.Header.Get("X-User")
	if u == "" {
		return "", errors.New("no user")
	}
	return u, nil
}

// app is the handler under test. It counts its runs and answers with what
// the request's query asks for:
//
//	status=N  answer with status N (default 201)
//	size=N    a body of N bytes instead of the JSON one
//	panic=1   panic
//	cancel=1  cancel the request's context first (the client went away)
//	empty=1   write nothing
//
// Its JSON body carries the run number and the principal, so a replay
// shows which run and whose response it is.
type app struct{ runs atomic.Int64 }

func (a *app) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := a.runs.Add(1)
	body, err := io.ReadAll(r.Body)
	if err != nil {
		panic(err)
	}
	q := r.URL.Query()
	if q.Get("cancel") == "1" {
		r.Context().Value(cancelKey{}).(context.CancelFunc)() // the client goes away
	}
	if q.Get("panic") == "1" {
		panic("handler panicked")
	}
	if q.Get("empty") == "1" {
		return
	}
	status := http.StatusCreated
	if s := q.Get("status"); s != "" {
		status, _ = strconv.Atoi(s)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Location", "/charges/ch_"+strconv.FormatInt(n, 10))
	h.Set("Set-Cookie", "session=secret-"+r.Header.Get("X-User"))
	h.Set("X-Request-Cost", "7")
	h.Set("X-Private", "hidden")
	h.Set("Connection", "X-Private")
	h.Set("Cache-Control", "no-cache")
	if size := q.Get("size"); size != "" {
		n, _ := strconv.Atoi(size)
		h.Set("Content-Type", "application/octet-stream")
		w.WriteHeader(status)
		w.Write(bytes.Repeat([]byte{'x'}, n))
		return
	}
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"run":%d,"user":%q,"body":%q}`+"\n", n, r.Header.Get("X-User"), body)
}

type cancelKey struct{}

// fixture is the middleware on app, on a spy memstore.
type fixture struct {
	store *spyStore
	app   *app
	h     http.Handler
	log   *testenv.SyncBuffer
}

func newFixture(t testing.TB, cfg *idemhttp.Config) *fixture {
	t.Helper()
	f := &fixture{store: &spyStore{Store: memstore.New()}, app: &app{}, log: &testenv.SyncBuffer{}}
	engine, err := idem.New(f.store, &idem.Config{Namespace: "http"})
	if err != nil {
		t.Fatal(err)
	}
	var c idemhttp.Config
	if cfg != nil {
		c = *cfg
	}
	c.Logger = slog.New(slog.NewTextHandler(f.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	mw, err := idemhttp.Middleware(engine, userPrincipal, &c)
	if err != nil {
		t.Fatal(err)
	}
	f.h = recoverer(mw(f.app))
	return f
}

// recoverer turns a handler panic into a 599 response, as a test stand-in
// for net/http dropping the connection.
func recoverer(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				w.WriteHeader(599)
			}
		}()
		h.ServeHTTP(w, r)
	})
}

// req describes one request. keys nil means no Idempotency-Key field; each
// element is one field.
type req struct {
	method  string // default POST
	target  string // default /charges
	user    string // X-User; default "alice", "-" for none
	keys    []string
	body    string
	header  http.Header
	chunked bool // unknown Content-Length
}

func (q req) build() *http.Request {
	method, target, user := q.method, q.target, q.user
	if method == "" {
		method = http.MethodPost
	}
	if target == "" {
		target = "/charges"
	}
	if user == "" {
		user = "alice"
	}
	var body io.Reader = strings.NewReader(q.body)
	if q.chunked {
		body = io.MultiReader(strings.NewReader(q.body)) // hides the length
	}
	r := httptest.NewRequest(method, target, body)
	if strings.Contains(target, "cancel=1") {
		ctx, cancel := context.WithCancel(r.Context())
		r = r.WithContext(context.WithValue(ctx, cancelKey{}, context.CancelFunc(cancel)))
	}
	if q.chunked {
		r.ContentLength = -1
	}
	if user != "-" {
		r.Header.Set("X-User", user)
	}
	if q.keys != nil {
		r.Header["Idempotency-Key"] = q.keys
	}
	for k, v := range q.header {
		r.Header[k] = v
	}
	return r
}

func (f *fixture) do(q req) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, q.build())
	return w
}

// problemCode returns the "code" of a problem response, or "" if the
// response is not a problem.
func problemCode(t testing.TB, w *httptest.ResponseRecorder) string {
	t.Helper()
	if w.Header().Get("Content-Type") != "application/problem+json" {
		return ""
	}
	var p struct {
		Type   string `json:"type"`
		Title  string `json:"title"`
		Status int    `json:"status"`
		Code   string `json:"code"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
		t.Fatalf("problem body %q: %v", w.Body, err)
	}
	if p.Status != w.Code || p.Type != "about:blank" || p.Title != http.StatusText(w.Code) {
		t.Errorf("problem %+v does not match status %d", p, w.Code)
	}
	return p.Code
}
