package provider

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// Defaults for ClientConfig.
const (
	DefaultTimeout          = 10 * time.Second
	DefaultPageSize         = 100
	DefaultMaxResponseBytes = 8 << 20
)

// ClientConfig tunes a Client. A nil *ClientConfig, and every zero field,
// means the documented default.
type ClientConfig struct {
	// Timeout bounds each call, from dialing to the last byte of the
	// response. Running out of time after the connection was made is
	// KindUnknown: the provider may have acted. Default 10s.
	Timeout time.Duration

	// PageSize is how many charges or refunds a listing asks for per
	// request; a listing of any length is read a page at a time. Default
	// DefaultPageSize (100).
	PageSize int

	// MaxResponseBytes bounds what the Client reads of one response; a
	// larger one is an error (KindUnknown for a charge or refund, whose
	// outcome it hides). Default DefaultMaxResponseBytes (8 MiB).
	MaxResponseBytes int

	// HTTPClient sends the requests. The Client uses a copy of it that
	// never follows redirects. Default: a client of the Client's own, on
	// a clone of http.DefaultTransport.
	HTTPClient *http.Client

	// OnRequestWritten, if set, is called once per Charge or Refund call,
	// as soon as its request has been written in full: from then on the
	// provider may act on it. payd uses it as a failpoint, "after the
	// provider request is sent". It runs on the transport's goroutine
	// while the response is awaited, so it must not block for long; it is
	// not called for lookups, which change nothing. Default: none.
	OnRequestWritten func()

	// TracerProvider, if set, makes a client span of each call, and its
	// W3C trace context (traceparent) goes with the request, so the
	// provider can join payd's trace (TestProviderCallIsTraced).
	// Default: none.
	TracerProvider trace.TracerProvider
}

// Client is a Provider that speaks the simulator's HTTP API
// (internal/simulator), which payd uses for every provider, the built-in
// simulator included. It is safe for concurrent use.
//
// It never retries: every call sends one request, and its error says what
// the caller may do next. Each error is a *Error, except ErrNotFound from
// the lookups:
//
//   - 402: KindDeclined, with the decline code in Code. Charge returns the
//     declined charge, as the provider recorded it, beside the error.
//   - 429 and 5xx: KindRetryable. The simulator guarantees it did nothing
//     when it answers them, but a real provider's 500 can come after it
//     acted (Stripe caches 500s under the idempotency key for that reason),
//     so payd counts a 5xx other than 503 as a request that may be
//     outstanding: it retries it, and never fails the charge on a "not
//     found" until the provider's longest processing time has passed.
//   - 408: KindRetryable. The provider timed out reading the request and
//     did not act on it.
//   - 409: KindUnknown, with the provider's code. Another request under the
//     same idempotency key is in flight at the provider: it may yet act on
//     it, so a lookup that finds nothing meanwhile proves nothing. Retry
//     with the same key later; the provider answers it once the first is
//     done.
//   - 400 with code "idempotency_mismatch": KindUnknown. The provider
//     holds a charge or refund under the key, made for other parameters
//     than these: look it up and compare, never call it a decline.
//   - Any other 4xx (an invalid request, a refund larger than what is
//     left): KindDeclined, with the provider's error code in Code and the
//     status in Status. The provider refused this request before acting on
//     it, so nothing was charged by it and sending it again cannot succeed:
//     it is a bug in the caller, to alert on, not to retry. Status tells it
//     apart from a card decline (402).
//   - 404 answered to a lookup with error code "not_found": ErrNotFound.
//     Any other 404 (a wrong base URL) is a refusal, as above.
//   - A call the Client refuses to send (no idempotency key): KindDeclined,
//     Code "invalid_request", Status 0.
//   - No connection was made (refused, unreachable, DNS, TLS, or the call
//     ran out of time dialing): KindRetryable. Nothing was written, so the
//     provider cannot have acted.
//   - Anything else after a connection was made: KindUnknown. This covers
//     a timeout or reset after the request was sent, a connection closed
//     without a response (the ghost charge), a response cut short or
//     unreadable, and a status no row above explains. A connection can
//     fail while the request is being written; some of it may have
//     reached the provider, so that is KindUnknown too. A reused
//     keep-alive connection that the provider had just closed also ends
//     here: when unsure, the provider may have acted.
type Client struct {
	base      *url.URL
	http      http.Client
	timeout   time.Duration
	pageSize  int
	maxBytes  int
	onWritten func()
	tracer    trace.Tracer // nil: calls are not traced
}

var _ Provider = (*Client)(nil)

// NewClient returns a Client for the provider at baseURL, an absolute
// http or https URL under which the API's paths (/charges, /refunds)
// live.
func NewClient(baseURL string, cfg *ClientConfig) (*Client, error) {
	base, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("provider: base URL: %w", err)
	}
	if (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("provider: base URL %q is not an absolute http or https URL", baseURL)
	}
	var c ClientConfig
	if cfg != nil {
		c = *cfg
	}
	if c.Timeout < 0 || c.PageSize < 0 || c.MaxResponseBytes < 0 {
		return nil, errors.New("provider: Timeout, PageSize and MaxResponseBytes must not be negative")
	}
	cl := &Client{
		base:      base,
		timeout:   cmp.Or(c.Timeout, DefaultTimeout),
		pageSize:  cmp.Or(c.PageSize, DefaultPageSize),
		maxBytes:  cmp.Or(c.MaxResponseBytes, DefaultMaxResponseBytes),
		onWritten: c.OnRequestWritten,
	}
	if c.TracerProvider != nil {
		cl.tracer = c.TracerProvider.Tracer(scope)
	}
	if c.HTTPClient != nil {
		cl.http = *c.HTTPClient
	} else {
		t := http.DefaultTransport.(*http.Transport).Clone()
		// payd's workers call one provider concurrently.
		t.MaxIdleConnsPerHost = 32
		cl.http.Transport = t
	}
	// A redirected POST becomes a GET: never follow one.
	cl.http.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return cl, nil
}

// CloseIdleConnections closes the connections the Client keeps open
// between calls, which otherwise hold a goroutine each.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

// Charge asks for a charge under req.IdempotencyKey. The same key within
// the provider's key window returns the same charge, never a second one,
// so a call that ended in KindRetryable or KindUnknown is retried with the
// same key. A declined charge is returned beside its *Error (KindDeclined,
// Code the decline code), with Status StatusFailed.
func (c *Client) Charge(ctx context.Context, req ChargeRequest) (Charge, error) {
	if req.IdempotencyKey == "" {
		return Charge{}, invalid("a charge needs an idempotency key")
	}
	body, err := json.Marshal(chargeBody{Amount: req.Amount, Currency: req.Currency, Metadata: req.Metadata})
	if err != nil {
		return Charge{}, invalid(err.Error())
	}
	resp, err := c.send(ctx, http.MethodPost, c.url("charges", nil), req.IdempotencyKey, body)
	if err != nil {
		return Charge{}, err
	}
	if !resp.ok() && resp.status != http.StatusPaymentRequired {
		return Charge{}, resp.err(false)
	}
	var ch Charge
	if err := json.Unmarshal(resp.body, &ch); err != nil || ch.ID == "" {
		return Charge{}, resp.unreadable(err)
	}
	switch {
	case ch.Status == StatusFailed:
		return ch, &Error{Kind: KindDeclined, Code: ch.DeclineCode, Status: resp.status,
			Message: fmt.Sprintf("charge %s declined", ch.ID)}
	case ch.Status == StatusSucceeded && resp.ok():
		return ch, nil
	}
	// A 402 for a charge that did not fail, or a status we do not know
	// (a pending charge): only a lookup can settle it.
	return ch, &Error{Kind: KindUnknown, Status: resp.status,
		Message: fmt.Sprintf("charge %s answered %d with status %q", ch.ID, resp.status, ch.Status)}
}

// ChargeByKey looks a charge up by its idempotency key: the latest charge
// made under it, succeeded or failed. It returns ErrNotFound if the
// provider never charged under the key.
func (c *Client) ChargeByKey(ctx context.Context, key string) (Charge, error) {
	if key == "" {
		return Charge{}, invalid("a lookup needs an idempotency key")
	}
	return get[Charge](ctx, c, c.url("charges", url.Values{"idempotency_key": {key}}))
}

// Charges lists the charges created in [from, to), oldest first, a page
// of PageSize at a time: the next page is asked for, after the last
// charge seen, only when the loop gets that far. A zero from or to leaves
// that end open. A failed page ends the listing with its error.
func (c *Client) Charges(ctx context.Context, from, to time.Time) iter.Seq2[Charge, error] {
	return pages(ctx, c, "charges", from, to, func(ch Charge) string { return ch.ID })
}

// Refund asks for a refund of part or all of a succeeded charge under
// req.IdempotencyKey; like Charge, the same key returns the same refund.
// A refund larger than what is left of the charge is refused with
// KindDeclined, Code "amount_too_large".
func (c *Client) Refund(ctx context.Context, req RefundRequest) (Refund, error) {
	if req.IdempotencyKey == "" {
		return Refund{}, invalid("a refund needs an idempotency key")
	}
	body, err := json.Marshal(refundBody{Charge: req.ChargeID, Amount: req.Amount, Metadata: req.Metadata})
	if err != nil {
		return Refund{}, invalid(err.Error())
	}
	resp, err := c.send(ctx, http.MethodPost, c.url("refunds", nil), req.IdempotencyKey, body)
	if err != nil {
		return Refund{}, err
	}
	if !resp.ok() {
		return Refund{}, resp.err(false)
	}
	var r Refund
	if err := json.Unmarshal(resp.body, &r); err != nil || r.ID == "" {
		return Refund{}, resp.unreadable(err)
	}
	return r, nil
}

// RefundByKey looks a refund up by its idempotency key. It returns
// ErrNotFound if the provider never refunded under the key.
func (c *Client) RefundByKey(ctx context.Context, key string) (Refund, error) {
	if key == "" {
		return Refund{}, invalid("a lookup needs an idempotency key")
	}
	return get[Refund](ctx, c, c.url("refunds", url.Values{"idempotency_key": {key}}))
}

// Refunds lists the refunds created in [from, to), as Charges lists
// charges.
func (c *Client) Refunds(ctx context.Context, from, to time.Time) iter.Seq2[Refund, error] {
	return pages(ctx, c, "refunds", from, to, func(r Refund) string { return r.ID })
}

// pages lists path's objects created in [from, to), a page at a time,
// each page asked for after the id of the last object of the one before.
// A provider that says it has more but returns no page, or the same one
// again, ends the listing with an error rather than never ending it
// (TestListingThatDoesNotAdvance).
func pages[T any](ctx context.Context, c *Client, path string, from, to time.Time, id func(T) string) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		q := timeRange(from, to)
		q.Set("limit", strconv.Itoa(c.pageSize))
		for {
			l, err := get[list[T]](ctx, c, c.url(path, q))
			if err != nil {
				var zero T
				yield(zero, err)
				return
			}
			for _, v := range l.Data {
				if !yield(v, nil) {
					return
				}
			}
			if !l.HasMore {
				return
			}
			next := ""
			if len(l.Data) > 0 {
				next = id(l.Data[len(l.Data)-1])
			}
			if next == "" || next == q.Get("starting_after") {
				var zero T
				yield(zero, &Error{Kind: KindUnknown, Message: fmt.Sprintf("the %s listing says it has more after %q but does not advance", path, q.Get("starting_after"))})
				return
			}
			q.Set("starting_after", next)
		}
	}
}

// The request and response bodies of the API.
type (
	chargeBody struct {
		Amount   int64             `json:"amount"`
		Currency string            `json:"currency"`
		Metadata map[string]string `json:"metadata,omitempty"`
	}
	refundBody struct {
		Charge   string            `json:"charge"`
		Amount   int64             `json:"amount"`
		Metadata map[string]string `json:"metadata,omitempty"`
	}
	list[T any] struct {
		Data    []T  `json:"data"`
		HasMore bool `json:"has_more"`
	}
	errorBody struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
)

func get[T any](ctx context.Context, c *Client, u *url.URL) (T, error) {
	var v T
	resp, err := c.send(ctx, http.MethodGet, u, "", nil)
	if err != nil {
		return v, err
	}
	if !resp.ok() {
		return v, resp.err(true)
	}
	if err := json.Unmarshal(resp.body, &v); err != nil {
		return v, resp.unreadable(err)
	}
	return v, nil
}

func (c *Client) url(path string, query url.Values) *url.URL {
	u := c.base.JoinPath(path)
	u.RawQuery = query.Encode()
	return u
}

func timeRange(from, to time.Time) url.Values {
	q := url.Values{}
	if !from.IsZero() {
		q.Set("created_gte", from.UTC().Format(time.RFC3339Nano))
	}
	if !to.IsZero() {
		q.Set("created_lt", to.UTC().Format(time.RFC3339Nano))
	}
	return q
}

// response is a response read in full.
type response struct {
	status int
	body   []byte
}

// roundTrip makes one request, with key as its Idempotency-Key if not
// empty, and reads the whole response. Its error is a *Error:
// KindRetryable if no connection was made, so nothing was written, and
// KindUnknown otherwise. Only POSTs carry a body, and only they call
// OnRequestWritten.
func (c *Client) roundTrip(ctx context.Context, method string, u *url.URL, key string, body []byte) (response, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	// The trace callbacks run on the transport's goroutines, and may run
	// after Do has returned.
	var connected, written atomic.Bool
	hook := c.onWritten
	if body == nil {
		hook = nil
	}
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		// GotConn is called on the caller's goroutine before anything is
		// written; without it, nothing was.
		GotConn: func(httptrace.GotConnInfo) { connected.Store(true) },
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			if info.Err == nil && written.CompareAndSwap(false, true) && hook != nil {
				hook()
			}
		},
	})

	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return response{}, invalid(err.Error())
	}
	// http.Transport sends a request again on its own, on a fresh
	// connection, when a reused one fails after it was written, if the
	// request is "replayable": a rewindable body and an Idempotency-Key
	// header qualify. The retry would hide a ghost charge from the caller,
	// and payd decides about retries. Without GetBody it never re-sends.
	req.GetBody = nil
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	c.inject(ctx, req.Header)

	resp, err := c.http.Do(req)
	if err != nil {
		switch {
		case !connected.Load():
			return response{}, &Error{Kind: KindRetryable, Message: "no connection to the provider, nothing sent", Err: err}
		case written.Load():
			return response{}, &Error{Kind: KindUnknown, Message: "request sent, no response", Err: err}
		}
		return response{}, &Error{Kind: KindUnknown, Message: "connection failed while sending the request", Err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, int64(c.maxBytes)+1))
	if err != nil {
		return response{}, &Error{Kind: KindUnknown, Status: resp.StatusCode, Message: "response cut short", Err: err}
	}
	if len(data) > c.maxBytes {
		return response{}, &Error{Kind: KindUnknown, Status: resp.StatusCode,
			Message: fmt.Sprintf("response larger than %d bytes (ClientConfig.MaxResponseBytes)", c.maxBytes)}
	}
	return response{status: resp.StatusCode, body: data}, nil
}

func (r response) ok() bool { return r.status >= 200 && r.status < 300 }

// err classifies a response that is not a success; see Client.
func (r response) err(lookup bool) error {
	var eb errorBody
	_ = json.Unmarshal(r.body, &eb) // a body that is not an error leaves eb empty
	e := &Error{Status: r.status, Code: eb.Error.Code, Message: eb.Error.Message}
	if e.Message == "" {
		e.Message = http.StatusText(r.status)
	}
	switch {
	case lookup && r.status == http.StatusNotFound && e.Code == "not_found":
		return ErrNotFound
	case r.status == http.StatusTooManyRequests:
		e.Kind = KindRetryable
		if e.Code == "" {
			e.Code = "rate_limited"
		}
	case r.status >= 500 && r.status < 600, r.status == http.StatusRequestTimeout:
		e.Kind = KindRetryable
	case r.status == http.StatusConflict:
		e.Kind = KindUnknown // another request under the key is in flight
	case r.status == http.StatusBadRequest && e.Code == "idempotency_mismatch":
		e.Kind = KindUnknown // the provider has something under the key: look it up
	case r.status >= 400 && r.status < 500:
		e.Kind = KindDeclined
	default:
		e.Kind = KindUnknown
		e.Message = fmt.Sprintf("unexpected status %d", r.status)
	}
	return e
}

// unreadable is the error for a response that says the provider acted but
// whose body cannot be read: the outcome is known only to the provider.
func (r response) unreadable(err error) error {
	return &Error{Kind: KindUnknown, Status: r.status, Message: "unreadable response", Err: err}
}

// invalid is the error for a call that payd got wrong before sending it: a
// bug, refused like the provider's own 4xx, with nothing sent.
func invalid(msg string) error {
	return &Error{Kind: KindDeclined, Code: "invalid_request", Message: msg}
}
