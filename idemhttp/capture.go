package idemhttp

import (
	"net/http"
	"strconv"
	"time"
)

// capture is the ResponseWriter a protected handler writes to. It holds the
// response back until the handler returns, so that the response can be
// recorded before the client sees it and replays are byte for byte what the
// first client got. A body that outgrows max switches it to pass-through:
// everything so far, and everything after, goes straight to the client, and
// the response is not kept.
//
// It implements http.Flusher, because handlers often assert it, but a Flush
// before the handler returns does nothing unless the response is already
// passing through. It does not implement http.Hijacker: a connection taken
// over cannot be recorded. Read and write deadlines and full duplex are
// passed to the client's writer.
type capture struct {
	w      http.ResponseWriter // the client's
	header http.Header         // what the handler sees through Header
	sent   http.Header         // header as of WriteHeader
	status int                 // 0 until the handler writes a final status
	body   []byte
	max    int
	// through is set once the body outgrew max: the response has been sent
	// to the client as it was written, and is not kept.
	through bool
}

func newCapture(w http.ResponseWriter, max int) *capture {
	return &capture{w: w, header: make(http.Header), max: max}
}

func (c *capture) Header() http.Header { return c.header }

// WriteHeader records the status and freezes the header, as net/http does.
// Informational (1xx) statuses are dropped: they cannot be replayed.
func (c *capture) WriteHeader(code int) {
	if code < 100 || code > 999 {
		panic("idemhttp: invalid WriteHeader code " + strconv.Itoa(code))
	}
	if c.status != 0 || code < 200 {
		return
	}
	c.status = code
	c.sent = c.header
	c.header = make(http.Header) // later changes are ignored, as by net/http
}

func (c *capture) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.WriteHeader(http.StatusOK)
	}
	if c.through {
		return c.w.Write(b)
	}
	if len(c.body)+len(b) <= c.max {
		c.body = append(c.body, b...)
		return len(b), nil
	}
	c.through = true
	c.sendHeader(false)
	if len(c.body) > 0 {
		if _, err := c.w.Write(c.body); err != nil {
			return 0, err
		}
	}
	c.body = nil
	return c.w.Write(b)
}

// Flush flushes a response that is passing through; otherwise it does
// nothing until the handler returns.
func (c *capture) Flush() {
	if c.through {
		http.NewResponseController(c.w).Flush()
	}
}

func (c *capture) SetReadDeadline(t time.Time) error {
	return http.NewResponseController(c.w).SetReadDeadline(t)
}

func (c *capture) SetWriteDeadline(t time.Time) error {
	return http.NewResponseController(c.w).SetWriteDeadline(t)
}

func (c *capture) EnableFullDuplex() error {
	return http.NewResponseController(c.w).EnableFullDuplex()
}

// finish settles the status of a handler that returned without writing.
func (c *capture) finish() {
	if c.status == 0 {
		c.WriteHeader(http.StatusOK)
	}
}

// sendHeader writes the handler's header and status to the client. With
// length set, a Content-Length for the held body replaces the handler's.
func (c *capture) sendHeader(length bool) {
	h := c.w.Header()
	for k, v := range c.sent {
		h[k] = v
	}
	if length && !bodyless(c.status) {
		h["Content-Length"] = []string{strconv.Itoa(len(c.body))}
	}
	c.w.WriteHeader(c.status)
}

// send writes the held response to the client, unless it already passed
// through.
func (c *capture) send() {
	if c.through {
		return
	}
	c.sendHeader(true)
	if len(c.body) > 0 && !bodyless(c.status) {
		c.w.Write(c.body)
	}
}

// bodyless reports whether a response with status may not carry a body.
func bodyless(status int) bool {
	return status == http.StatusNoContent || status == http.StatusNotModified
}
