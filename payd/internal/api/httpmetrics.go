package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// httpMetrics count and time every API request by route: the pattern that
// matched it, such as "POST /v1/charges", or unmatchedRoute. Routes and
// methods are bounded sets, so a client cannot grow the label space.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// unmatchedRoute is the route of a request no pattern matched: a 404, a
// 405, or a redirect to a cleaned path.
const unmatchedRoute = "unmatched"

// httpDurationBuckets, in seconds, reach past the longest Prefer: wait.
var httpDurationBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

func newHTTPMetrics(reg prometheus.Registerer) httpMetrics {
	m := httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "payd_http_requests_total",
			Help: `API requests answered, by route (the pattern matched, or "unmatched"), method and status.`,
		}, []string{"route", "method", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "payd_http_request_duration_seconds",
			Help:    `How long API requests took to answer, by route (the pattern matched, or "unmatched") and method; Prefer: wait counts.`,
			Buckets: httpDurationBuckets,
		}, []string{"route", "method"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

func (m httpMetrics) observe(route, method string, status int, took time.Duration) {
	m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(route, method).Observe(took.Seconds())
}

// methodLabel is r's method if it is a standard one, else "other".
func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return method
	}
	return "other"
}
