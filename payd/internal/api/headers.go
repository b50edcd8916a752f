package api

import (
	"fmt"
	"net/http"
)

// MaxHeaderBytes is the most header bytes payd reads in a request,
// counted as they were sent: the request line, and each header line, Host
// included, with its ": " and CRLF. A request with more gets 431
// problem+json (TestHeaderLimit). The HTTP server's own limit
// (http.Server.MaxHeaderBytes), which counts the same bytes, stays above
// it, so that payd, not Go's plain-text 431, answers every request
// between the two (TestManySmallHeaders).
const MaxHeaderBytes = 8 << 10

// limitHeaders refuses a request whose headers are over MaxHeaderBytes.
func limitHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if headerBytes(r) > MaxHeaderBytes {
			fail(w, http.StatusRequestHeaderFieldsTooLarge, "headers_too_large", "",
				fmt.Sprintf("the request line and headers must be at most %d bytes; send fewer or shorter headers", MaxHeaderBytes))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// headerBytes counts r's header bytes as MaxHeaderBytes does.
func headerBytes(r *http.Request) int {
	const lineEnd = len(": \r\n")
	n := len(r.Method) + len(" ") + len(r.RequestURI) + len(" ") + len(r.Proto) + len("\r\n")
	if r.Host != "" {
		n += len("Host") + len(r.Host) + lineEnd
	}
	for name, values := range r.Header {
		for _, v := range values {
			n += len(name) + len(v) + lineEnd
		}
	}
	return n
}
