// Package faultproxy puts a TCP proxy between a client and a server and
// breaks the link on demand: latency, a blackhole, connection resets. It
// runs toxiproxy as a library, in process, with no server to install.
package faultproxy

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Proxy forwards connections from Addr to its upstream, through the faults
// currently set.
type Proxy struct {
	proxy *toxiproxy.Proxy

	mu     sync.Mutex
	toxics []string
}

// Start listens on a free port of 127.0.0.1 and forwards to upstream
// (host:port).
func Start(name, upstream string) (*Proxy, error) {
	server := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	p := toxiproxy.NewProxy(server, name, "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		return nil, fmt.Errorf("faultproxy: start %s → %s: %w", name, upstream, err)
	}
	return &Proxy{proxy: p}, nil
}

// Addr is where clients connect instead of the upstream.
func (p *Proxy) Addr() string { return p.proxy.Listen }

// Latency delays every reply by d.
func (p *Proxy) Latency(d time.Duration) error {
	return p.add("latency", "downstream", fmt.Sprintf(`{"latency": %d}`, d.Milliseconds()))
}

// Blackhole stops data in both directions while keeping connections open:
// the partition that only client timeouts notice.
func (p *Proxy) Blackhole() error {
	if err := p.add("timeout", "upstream", `{"timeout": 0}`); err != nil {
		return err
	}
	return p.add("timeout", "downstream", `{"timeout": 0}`)
}

// Reset closes every connection with a TCP reset as data arrives, and new
// ones at once.
func (p *Proxy) Reset() error {
	return p.add("reset_peer", "upstream", `{"timeout": 0}`)
}

// Heal removes every fault.
func (p *Proxy) Heal() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, name := range p.toxics {
		if err := p.proxy.Toxics.RemoveToxic(context.Background(), name); err != nil {
			return fmt.Errorf("faultproxy: remove %s: %w", name, err)
		}
	}
	p.toxics = nil
	return nil
}

// Close heals the link, then stops the proxy and closes its connections.
// Healing first lets toxiproxy drain the goroutines of its faults.
func (p *Proxy) Close() {
	p.Heal()
	p.proxy.Stop()
}

func (p *Proxy) add(kind, stream, attributes string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	name := kind + "_" + stream
	spec := fmt.Sprintf(`{"name": %q, "type": %q, "stream": %q, "attributes": %s}`, name, kind, stream, attributes)
	if _, err := p.proxy.Toxics.AddToxicJson(strings.NewReader(spec)); err != nil {
		return fmt.Errorf("faultproxy: add %s: %w", name, err)
	}
	p.toxics = append(p.toxics, name)
	return nil
}
