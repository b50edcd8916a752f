package api

import (
	"fmt"
	"net/http"
)

// MaxHeaderBytes is the most header bytes payd reads in a request,
// counted as the lengths of each field's name and value, Host included:
// a request with more gets 431 problem+json
// (TestHeaderLimit). The HTTP server's own limit
// (http.Server.MaxHeaderBytes) must stay above it: past that limit Go
// answers a plain-text 431 itself, before payd sees the request.
const MaxHeaderBytes = 8 << 10

// limitHeaders refuses a request whose headers are over MaxHeaderBytes.
func limitHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if headerBytes(r) > MaxHeaderBytes {
			fail(w, http.StatusRequestHeaderFieldsTooLarge, "headers_too_large", "",
				fmt.Sprintf("the request headers must be at most %d bytes, names and values counted; send fewer or shorter headers", MaxHeaderBytes))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// headerBytes counts r's header bytes as MaxHeaderBytes does.
func headerBytes(r *http.Request) int {
	n := 0
	if r.Host != "" {
		n += len("Host") + len(r.Host)
	}
	for name, values := range r.Header {
		for _, v := range values {
			n += len(name) + len(v)
		}
	}
	return n
}
