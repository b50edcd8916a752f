package openapitest

import (
	"bytes"
	"io"
	"net/http"
	"testing"
	"time"
)

// Transport returns a RoundTripper that sends each request through next
// (http.DefaultTransport if nil) and fails t, with t.Errorf, for any
// exchange Check refuses. It reads each response's body whole before it
// returns it. It is safe for concurrent use, as t.Errorf is.
func (c *Checker) Transport(t testing.TB, next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return &transport{checker: c, t: t, next: next}
}

// Client returns an HTTP client whose Transport is c's, with timeout
// (none if zero).
func (c *Checker) Client(t testing.TB, timeout time.Duration) *http.Client {
	return &http.Client{Transport: c.Transport(t, nil), Timeout: timeout}
}

type transport struct {
	checker *Checker
	t       testing.TB
	next    http.RoundTripper
}

func (tr *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		body = b
	}
	out := req.Clone(req.Context())
	switch {
	case req.Body != nil && len(body) == 0:
		out.Body = http.NoBody // as http.NewRequest makes it: not sent chunked
	case req.Body != nil:
		out.Body = io.NopCloser(bytes.NewReader(body))
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	resp, err := tr.next.RoundTrip(out)
	if err != nil {
		return nil, err
	}
	respBody, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(respBody))
	if err := tr.checker.Check(req, body, resp, respBody); err != nil {
		tr.t.Errorf("openapitest: %s %s: %v", req.Method, req.URL.RequestURI(), err)
	}
	return resp, nil
}
