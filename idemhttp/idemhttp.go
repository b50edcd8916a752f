package idemhttp

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/idemhq/idem"
)

// Defaults for Config.
const (
	DefaultMaxRequestBytes  = 1 << 20
	DefaultMaxResponseBytes = 256 << 10
	DefaultRetryAfter       = time.Second
)

// Config tunes the middleware. A nil *Config, and every zero field, means
// the documented default.
type Config struct {
	// Methods are the request methods the middleware protects; requests
	// with other methods pass straight to the handler, Idempotency-Key or
	// not. Routes are chosen by where the middleware is mounted. Default
	// POST and PATCH.
	Methods []string

	// Optional lets a protected request without an Idempotency-Key through
	// to the handler, unprotected. Default false: such a request gets 400.
	Optional bool

	// Route names the route of a request. It scopes keys (the same key on
	// two routes names two records) and is part of the fingerprint.
	// Default: r.Pattern when a ServeMux has set it (the middleware is
	// mounted on a handler inside the mux), else the escaped path. The
	// pattern groups the requests of one endpoint, the path tells resources
	// apart; either way the escaped path is in the fingerprint, so a key
	// reused on another resource of the same pattern gets 422, never the
	// other resource's response. Routers other than ServeMux have their
	// own way to name the matched pattern (chi's RouteContext, for one).
	Route func(*http.Request) string

	// FingerprintHeaders are request header fields that, besides the
	// method, route, path, query and body, make up the fingerprint, such
	// as an API version header: a key reused with a different value gets
	// 422. Default none.
	FingerprintHeaders []string

	// ReplayHeaders are response header fields kept and replayed, besides
	// Content-Type and Location, which always are. Fields that carry
	// credentials or belong to one connection (Set-Cookie, Cookie,
	// Authorization, WWW-Authenticate, Proxy-*, Connection, Keep-Alive, TE,
	// Trailer, Transfer-Encoding, Upgrade) are refused by Middleware, and
	// fields named in a response's Connection field are never kept.
	// Default none.
	ReplayHeaders []string

	// RetryStatuses are the statuses that invite a retry: a response with
	// one of them goes to the client but is not recorded, and the key is
	// released, so a retry runs the handler again. Nil means 429 and 503;
	// an empty, non-nil slice means none. Every other status is final,
	// 500 included (as Stripe does): a handler that returns 502 or 504 after
	// an upstream timeout should add them only if the upstream call is
	// itself idempotent, since a retry runs it again.
	RetryStatuses []int

	// MaxWait is how long a request waits for another request with the same
	// key to finish, and then gets its response, before answering 409.
	// Default 0: answer 409 at once, as the IETF draft and Stripe do.
	MaxWait time.Duration

	// RetryAfter is the Retry-After sent with 409 and 503, rounded up to
	// whole seconds. Default 1s.
	RetryAfter time.Duration

	// MaxRequestBytes caps the request body of a protected request; a
	// larger one gets 413 before it is hashed. Default 1 MiB.
	MaxRequestBytes int64

	// MaxResponseBytes caps the response body kept for replay. A larger
	// response is sent to its client as written, and only its status and
	// replayable header fields are recorded; replays get a 500 problem
	// (code response_not_stored, with original_status). Default 256 KiB.
	MaxResponseBytes int

	// Logger receives errors the client only sees as a status: store
	// failures and responses that ran but could not be recorded. Requests
	// are logged by their lookup key (a SHA-256), never by the raw
	// Idempotency-Key. Default: discard.
	Logger *slog.Logger
}

// noReplay are the header fields never kept or replayed, whatever
// Config.ReplayHeaders says, besides every Proxy-* field.
var noReplay = []string{
	"Set-Cookie", "Set-Cookie2", "Cookie", "Authorization", "Www-Authenticate",
	"Connection", "Keep-Alive", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
	"Content-Length", "Date", "Idempotent-Replayed",
}

// middleware is a resolved Config.
type middleware struct {
	principal    func(*http.Request) (string, error)
	methods      []string
	optional     bool
	route        func(*http.Request) string
	fpHeaders    []string
	keep         []string          // replayable fields, canonical
	keepSet      map[string]string // the same, by canonical and lower-case name
	retry        []int
	wait         time.Duration
	retryAfter   string
	maxRequest   int64
	maxResponse  int
	log          *slog.Logger
	problems     [numProblems][]byte
	bufs         sync.Pool // *[]byte, request bodies
	runRetryable func(error) bool
}

// Middleware returns middleware that makes the requests it protects
// idempotent through engine: the first request with a given key runs the
// handler and its response is recorded; later requests with the same key,
// from the same principal, get that response again, marked
// Idempotent-Replayed: true. See the package documentation for the
// statuses it answers with and what it records.
//
// principal names who is asking, typically from what an authentication
// middleware in front has put in the request's context. It scopes keys: a
// response is only ever replayed to the principal it was made for. An
// error means 401 and nothing stored. A service without principals says so
// with a function that returns "", nil. The engine's Namespace separates
// this middleware's records from other users of the same store.
func Middleware(engine *idem.Engine, principal func(*http.Request) (string, error), cfg *Config) (func(http.Handler) http.Handler, error) {
	m, err := newMiddleware(engine, principal, cfg)
	if err != nil {
		return nil, err
	}
	return func(next http.Handler) http.Handler {
		return &handler{m: m, next: next, run: engine.Run}
	}, nil
}

// MiddlewareTx is Middleware for handlers that write to the database of the
// engine's store: the handler runs inside the transaction that records its
// response (idem.RunTx), finds it with TxFrom, and its writes and its
// response commit together, or neither does. A response with a
// RetryStatuses status rolls the handler's writes back with the claim. The
// engine's store must be a store.TxStore[Tx].
func MiddlewareTx[Tx any](engine *idem.Engine, principal func(*http.Request) (string, error), cfg *Config) (func(http.Handler) http.Handler, error) {
	m, err := newMiddleware(engine, principal, cfg)
	if err != nil {
		return nil, err
	}
	run := func(ctx context.Context, key string, fn func(context.Context) ([]byte, error), opts *idem.RunOptions) (idem.Result[[]byte], error) {
		return idem.RunTx(ctx, engine, key, func(ctx context.Context, tx Tx) ([]byte, error) {
			return fn(context.WithValue(ctx, txKey{}, tx))
		}, opts)
	}
	return func(next http.Handler) http.Handler {
		return &handler{m: m, next: next, run: run, tx: true}
	}, nil
}

type txKey struct{}

// TxFrom returns the transaction a handler under MiddlewareTx runs in; ok is
// false anywhere else.
func TxFrom[Tx any](ctx context.Context) (tx Tx, ok bool) {
	tx, ok = ctx.Value(txKey{}).(Tx)
	return tx, ok
}

func newMiddleware(engine *idem.Engine, principal func(*http.Request) (string, error), cfg *Config) (*middleware, error) {
	if engine == nil {
		return nil, errors.New("idemhttp: Middleware needs an engine")
	}
	if principal == nil {
		return nil, errors.New("idemhttp: Middleware needs a principal function (one returning \"\", nil if the service has no principals)")
	}
	var c Config
	if cfg != nil {
		c = *cfg
	}
	m := &middleware{
		principal:   principal,
		methods:     []string{http.MethodPost, http.MethodPatch},
		optional:    c.Optional,
		route:       c.Route,
		retry:       []int{http.StatusTooManyRequests, http.StatusServiceUnavailable},
		wait:        c.MaxWait,
		maxRequest:  c.MaxRequestBytes,
		maxResponse: c.MaxResponseBytes,
		log:         c.Logger,
	}
	if c.Methods != nil {
		m.methods = slices.Clone(c.Methods)
	}
	if m.route == nil {
		m.route = defaultRoute
	}
	for _, h := range c.FingerprintHeaders {
		if !validName([]byte(h)) {
			return nil, fmt.Errorf("idemhttp: FingerprintHeaders: %q is not a header field name", h)
		}
		m.fpHeaders = append(m.fpHeaders, http.CanonicalHeaderKey(h))
	}
	slices.Sort(m.fpHeaders)
	m.fpHeaders = slices.Compact(m.fpHeaders)
	m.keep = []string{"Content-Type", "Location"}
	for _, h := range c.ReplayHeaders {
		if !validName([]byte(h)) {
			return nil, fmt.Errorf("idemhttp: ReplayHeaders: %q is not a header field name", h)
		}
		h = http.CanonicalHeaderKey(h)
		if slices.Contains(noReplay, h) || strings.HasPrefix(h, "Proxy-") {
			return nil, fmt.Errorf("idemhttp: ReplayHeaders: %s is never replayed", h)
		}
		if !slices.Contains(m.keep, h) {
			m.keep = append(m.keep, h)
		}
	}
	m.keepSet = make(map[string]string, 2*len(m.keep))
	for _, h := range m.keep {
		m.keepSet[h] = h
		m.keepSet[strings.ToLower(h)] = h
	}
	if c.RetryStatuses != nil {
		m.retry = slices.Clone(c.RetryStatuses)
	}
	for _, s := range m.retry {
		if s < 200 || s > 999 {
			return nil, fmt.Errorf("idemhttp: RetryStatuses: %d is not a final status", s)
		}
	}
	if m.wait < 0 {
		return nil, fmt.Errorf("idemhttp: MaxWait must not be negative, got %s", m.wait)
	}
	ra := c.RetryAfter
	if ra == 0 {
		ra = DefaultRetryAfter
	}
	if ra < 0 {
		return nil, fmt.Errorf("idemhttp: RetryAfter must not be negative, got %s", ra)
	}
	m.retryAfter = strconv.FormatInt(int64(math.Ceil(ra.Seconds())), 10)
	if m.maxRequest == 0 {
		m.maxRequest = DefaultMaxRequestBytes
	}
	if m.maxRequest < 0 {
		return nil, fmt.Errorf("idemhttp: MaxRequestBytes must not be negative, got %d", m.maxRequest)
	}
	if m.maxResponse == 0 {
		m.maxResponse = DefaultMaxResponseBytes
	}
	if m.maxResponse < 0 {
		return nil, fmt.Errorf("idemhttp: MaxResponseBytes must not be negative, got %d", m.maxResponse)
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	for i, p := range problems {
		m.problems[i] = p.json(0)
	}
	m.runRetryable = func(err error) bool {
		var r *released
		return errors.As(err, &r)
	}
	return m, nil
}

// defaultRoute is r.Pattern when a ServeMux has set it, else the escaped
// path.
func defaultRoute(r *http.Request) string {
	if r.Pattern != "" {
		return r.Pattern
	}
	return r.URL.EscapedPath()
}

// released is the error a run returns for a response whose status invites
// a retry: the key is released, and the response goes to this client only.
type released struct{ status int }

func (r *released) Error() string {
	return "idemhttp: status " + strconv.Itoa(r.status) + " invites a retry; key released"
}

type handler struct {
	m    *middleware
	next http.Handler
	// run is the engine's Run, or RunTx for MiddlewareTx.
	run func(ctx context.Context, key string, fn func(context.Context) ([]byte, error), opts *idem.RunOptions) (idem.Result[[]byte], error)
	// tx: the handler's writes commit with its response (MiddlewareTx).
	tx bool
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m := h.m
	if !slices.Contains(m.methods, r.Method) {
		h.next.ServeHTTP(w, r)
		return
	}
	values := r.Header["Idempotency-Key"]
	switch {
	case len(values) == 0 && m.optional:
		h.next.ServeHTTP(w, r)
		return
	case len(values) == 0:
		m.fail(w, probKeyMissing)
		return
	case len(values) > 1:
		m.fail(w, probKeyRepeated)
		return
	}
	key, err := parseKey(values[0])
	if err != nil {
		m.fail(w, probKeyMalformed)
		return
	}
	principal, err := m.principal(r)
	if err != nil {
		m.fail(w, probUnauthorized)
		return
	}
	route := m.route(r)

	if r.ContentLength > m.maxRequest {
		m.fail(w, probBodyTooLarge)
		return
	}
	bp := m.getBuf()
	defer m.putBuf(bp)
	buf, off := m.fingerprintPrefix((*bp)[:0], r, route)
	if r.Body != nil {
		buf, err = readBody(buf, r.Body, m.maxRequest)
	}
	*bp = buf
	switch {
	case errors.Is(err, errBodyTooLarge):
		m.fail(w, probBodyTooLarge)
		return
	case err != nil:
		m.fail(w, probBodyUnreadable)
		return
	}
	body := buf[off:]
	var fp, lookup [2 * sha256.Size]byte
	sum := sha256.Sum256(buf)
	hex.Encode(fp[:], sum[:])
	sum = lookupKey(buf[len(buf):], principal, r.Method, route, key)
	hex.Encode(lookup[:], sum[:])

	var c *capture
	res, err := h.run(r.Context(), string(lookup[:]), func(ctx context.Context) ([]byte, error) {
		c = newCapture(w, m.maxResponse)
		r2 := r.WithContext(ctx)
		r2.Body = &bodyReader{b: body}
		h.next.ServeHTTP(c, r2)
		c.finish()
		if slices.Contains(m.retry, c.status) || c.status >= 500 && r.Context().Err() != nil {
			// A retry is invited, or a 5xx came after the client went
			// away, most likely because it did: neither is an outcome.
			return nil, &released{c.status}
		}
		fields, nf := fieldsOf(c.sent, m.keep)
		if c.through {
			return encodeRecord(kindTooLarge, c.status, nf, fields, nil), nil
		}
		return encodeRecord(kindResponse, c.status, nf, fields, c.body), nil
	}, &idem.RunOptions{
		Fingerprint: string(fp[:]),
		Retryable:   m.runRetryable,
		FailFast:    m.wait == 0,
		MaxWait:     m.wait,
	})
	switch {
	case err == nil && res.Replayed:
		m.replay(w, r, res.Value, lookup[:])
	case err == nil:
		c.send()
	default:
		m.failed(w, r, err, c, lookup[:], h.tx)
	}
}

// failed answers a request whose run returned err. c is the handler's
// response if it ran in this request, else nil. This is the one place
// where errors become statuses.
func (m *middleware) failed(w http.ResponseWriter, r *http.Request, err error, c *capture, lookup []byte, tx bool) {
	var rel *released
	var se *idem.StoreError
	switch {
	case errors.As(err, &rel):
		c.send()
	case errors.Is(err, idem.ErrInvalidKey):
		m.fail(w, probKeyMalformed)
	case errors.Is(err, idem.ErrMismatch):
		m.fail(w, probMismatch)
	case errors.Is(err, idem.ErrInFlight):
		m.fail(w, probInFlight)
	case errors.Is(err, idem.ErrNotRecorded) && tx:
		// The handler's writes were in the transaction that did not commit,
		// or whose commit was not confirmed: its response may describe
		// writes that never happened. The client's retry with the same key
		// gets the recorded response if the commit went through, and runs
		// the handler again if it did not.
		m.logErr(r, slog.LevelError, "idemhttp: the handler's transaction did not commit or was not confirmed; answering 503 so the client retries with the same key", lookup, err)
		m.fail(w, probUnsettled)
	case errors.Is(err, idem.ErrNotRecorded):
		m.logErr(r, slog.LevelError, "idemhttp: the handler ran but its response was not recorded; a retry may run it again", lookup, err)
		if c != nil {
			c.send()
		} else {
			m.fail(w, probInternal)
		}
	case errors.Is(err, idem.ErrLeaseLost):
		m.logErr(r, slog.LevelWarn, "idemhttp: lease lost while the handler ran; its response was discarded", lookup, err)
		if c != nil && c.through {
			return // already sent
		}
		m.fail(w, probUnsettled)
	case errors.As(err, &se) && !se.Executed:
		if r.Context().Err() == nil {
			m.logErr(r, slog.LevelWarn, "idemhttp: store unavailable; the handler did not run", lookup, err)
		}
		m.fail(w, probUnavailable)
	case r.Context().Err() != nil && c == nil:
		// The client went away while waiting; nobody reads the answer.
		m.fail(w, probUnavailable)
	default:
		m.logErr(r, slog.LevelError, "idemhttp: request failed", lookup, err)
		if c != nil && c.through {
			return
		}
		m.fail(w, probInternal)
	}
}

func (m *middleware) fail(w http.ResponseWriter, p int) {
	ra := ""
	if problems[p].retryAfter {
		ra = m.retryAfter
	}
	writeProblem(w, problems[p].status, m.problems[p], ra)
}

func (m *middleware) logErr(r *http.Request, level slog.Level, msg string, lookup []byte, err error) {
	m.log.LogAttrs(r.Context(), level, msg,
		slog.String("method", r.Method), slog.String("lookup", string(lookup)), slog.Any("error", err))
}

// replay writes a recorded response, with its replayable header fields
// only, and Idempotent-Replayed: true.
func (m *middleware) replay(w http.ResponseWriter, r *http.Request, b []byte, lookup []byte) {
	rec, err := decodeRecord(b)
	if err != nil {
		m.logErr(r, slog.LevelError, "idemhttp: recorded response is unreadable", lookup, err)
		m.fail(w, probInternal)
		return
	}
	h := w.Header()
	// One string holds every field value and one slice every field: the
	// values are substrings of it, each field a window on the slice.
	values := make([]string, rec.nf+2)
	all := string(rec.fields)
	n := 0
	prev := ""
	rest := rec.fields
	for range rec.nf {
		var name, value []byte
		name, rest, _ = cutField(rest)
		value, rest, _ = cutField(rest)
		canonical, ok := m.keepSet[string(name)]
		if !ok {
			continue // no longer replayable under this Config
		}
		at := len(rec.fields) - len(rest) - len(value)
		values[n] = all[at : at+len(value)]
		if canonical == prev {
			h[canonical] = append(h[canonical], values[n])
		} else {
			h[canonical] = values[n : n+1 : n+1]
			prev = canonical
		}
		n++
	}
	values[n] = "true"
	h["Idempotent-Replayed"] = values[n : n+1 : n+1]
	if rec.kind == kindTooLarge {
		body := tooLarge.json(rec.status)
		h["Content-Type"] = []string{"application/problem+json"}
		h["Content-Length"] = []string{strconv.Itoa(len(body))}
		w.WriteHeader(tooLarge.status)
		w.Write(body)
		return
	}
	if !bodyless(rec.status) {
		values[n+1] = strconv.Itoa(len(rec.body))
		h["Content-Length"] = values[n+1 : n+2 : n+2]
	}
	w.WriteHeader(rec.status)
	if len(rec.body) > 0 && !bodyless(rec.status) {
		w.Write(rec.body)
	}
}

// getBuf returns a buffer for a request body from the pool.
func (m *middleware) getBuf() *[]byte {
	if bp, ok := m.bufs.Get().(*[]byte); ok {
		return bp
	}
	b := make([]byte, 0, 4096)
	return &b
}

// maxPooledBuf is the largest body buffer kept for reuse: an occasional
// large body should not pin its buffer.
const maxPooledBuf = 64 << 10

func (m *middleware) putBuf(bp *[]byte) {
	if cap(*bp) <= maxPooledBuf {
		m.bufs.Put(bp)
	}
}

// fingerprintPrefix appends to buf what the fingerprint covers besides the
// body, each part length-prefixed so that no two requests share an
// encoding: method, route, escaped path, canonical query, and the chosen
// header fields. off is where the body will start.
func (m *middleware) fingerprintPrefix(buf []byte, r *http.Request, route string) (_ []byte, off int) {
	buf = appendPart(buf, r.Method)
	buf = appendPart(buf, route)
	buf = appendPart(buf, r.URL.EscapedPath())
	buf = appendPart(buf, canonicalQuery(r.URL.RawQuery))
	for _, name := range m.fpHeaders {
		vs := r.Header[name]
		buf = appendPart(buf, name)
		buf = binary.BigEndian.AppendUint64(buf, uint64(len(vs)))
		for _, v := range vs {
			buf = appendPart(buf, v)
		}
	}
	return buf, len(buf)
}

func appendPart(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(len(s)))
	return append(b, s...)
}

// canonicalQuery returns the query with its parameters sorted by name
// (values keep their order) and uniformly escaped, so that parameter order
// and escaping choices do not change the fingerprint. A query that does
// not parse is used as sent.
func canonicalQuery(raw string) string {
	if raw == "" {
		return ""
	}
	q, err := url.ParseQuery(raw)
	if err != nil {
		return "\x00" + raw // cannot equal an encoded query
	}
	return q.Encode()
}

// lookupKey is the SHA-256 of the principal, method, route and key, each
// length-prefixed: requests share a record only when all four are equal.
// scratch is spare capacity to build the input in.
func lookupKey(scratch []byte, principal, method, route, key string) [sha256.Size]byte {
	b := scratch[:0]
	b = appendPart(b, principal)
	b = appendPart(b, method)
	b = appendPart(b, route)
	b = appendPart(b, key)
	return sha256.Sum256(b)
}

var errBodyTooLarge = errors.New("request body over the limit")

// readBody appends r's content to buf, up to max bytes.
func readBody(buf []byte, r io.Reader, max int64) ([]byte, error) {
	start := len(buf)
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(cap(buf), int(max)+1))
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)-start) > max {
			return buf, errBodyTooLarge
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// bodyReader is the request body the handler reads: the bytes already read
// and fingerprinted.
type bodyReader struct{ b []byte }

func (r *bodyReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

func (r *bodyReader) Close() error { return nil }
