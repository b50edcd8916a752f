package idemprom_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/idemprom"
	"github.com/idemhq/idem/memstore"
)

// The observer on an engine, its metrics labelled with the store and served
// on /metrics.
func ExampleNew() {
	reg := prometheus.NewRegistry()
	observer, err := idemprom.New(prometheus.WrapRegistererWith(prometheus.Labels{"store": "memstore"}, reg))
	if err != nil {
		panic(err)
	}
	engine, err := idem.New(memstore.New(), &idem.Config{Observer: observer})
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))

	charge := func(ctx context.Context) ([]byte, error) { return []byte("ch_1"), nil }
	for range 2 {
		if _, err := engine.Run(context.Background(), "order-1234", charge, nil); err != nil {
			panic(err)
		}
	}

	w := httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for line := range strings.Lines(w.Body.String()) {
		if strings.HasPrefix(line, "idem_events_total{") && !strings.HasSuffix(line, " 0\n") {
			fmt.Print(line)
		}
	}
	// Output:
	// idem_events_total{outcome="executed",store="memstore"} 1
	// idem_events_total{outcome="replayed",store="memstore"} 1
}
