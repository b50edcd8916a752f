package integration_test

import (
	"context"
	"crypto/rand"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/internal/faultproxy"
	"github.com/idemhq/idem/internal/testenv"
	"github.com/idemhq/idem/redisstore"
	"github.com/idemhq/idem/store"
)

// TestFaultsFailClosed puts a fault proxy between the store and Redis. For
// each fault, fn never runs without a confirmed claim, and the caller gets a
// typed error within the op timeout plus 50ms.
func TestFaultsFailClosed(t *testing.T) {
	opt, err := rueidis.ParseURL(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	upstream := opt.InitAddress[0]
	const opTimeout = 300 * time.Millisecond
	for _, fault := range []struct {
		name  string
		apply func(*faultproxy.Proxy) error
	}{
		{"LatencyBeyondOpTimeout", func(p *faultproxy.Proxy) error { return p.Latency(2 * opTimeout) }},
		{"ConnectionReset", (*faultproxy.Proxy).Reset},
		{"Blackhole", (*faultproxy.Proxy).Blackhole},
	} {
		t.Run(fault.name, func(t *testing.T) {
			proxy, err := faultproxy.Start(fault.name, upstream)
			if err != nil {
				t.Fatal(err)
			}
			defer proxy.Close()
			client, err := rueidis.NewClient(rueidis.ClientOption{
				InitAddress:      []string{proxy.Addr()},
				DisableRetry:     true,
				ConnWriteTimeout: opTimeout,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			store, err := redisstore.New(t.Context(), client, &redisstore.Config{
				Prefix:    "idemtest:" + rand.Text()[:10] + ":",
				OpTimeout: opTimeout,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			e, err := idem.New(store, nil)
			if err != nil {
				t.Fatal(err)
			}
			// Healthy first, so the fault hits live connections.
			if _, err := e.Run(t.Context(), "warm", func(context.Context) ([]byte, error) { return nil, nil }, nil); err != nil {
				t.Fatalf("Run before the fault: %v", err)
			}
			if err := fault.apply(proxy); err != nil {
				t.Fatal(err)
			}
			var executions atomic.Int32
			for i := range 10 {
				start := time.Now()
				_, err := e.Run(t.Context(), "k"+rand.Text(), func(context.Context) ([]byte, error) {
					executions.Add(1)
					return nil, nil
				}, nil)
				took := time.Since(start)
				se, ok := errors.AsType[*idem.StoreError](err)
				if !ok || se.Executed {
					t.Fatalf("call %d under %s: err = %v, want a *idem.StoreError before fn", i, fault.name, err)
				}
				if took > opTimeout+50*time.Millisecond {
					t.Fatalf("call %d under %s took %s, want within the op timeout %s + 50ms", i, fault.name, took, opTimeout)
				}
			}
			if n := executions.Load(); n != 0 {
				t.Fatalf("fn ran %d times without a confirmed claim, want 0", n)
			}
			// Healed, the store works again.
			if err := proxy.Heal(); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(10 * time.Second)
			for {
				_, err := e.Run(t.Context(), "after-"+rand.Text(), func(context.Context) ([]byte, error) { return nil, nil }, nil)
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("store still failing 10s after the fault healed: %v", err)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

// TestShorterDeadlinesHold: operations share a deadline of OpTimeout, but
// a caller's own deadline that comes sooner still ends its operation in
// time. The engine's renewals rely on it: a renewal must not outlast the
// lease it is trying to keep.
func TestShorterDeadlinesHold(t *testing.T) {
	opt, err := rueidis.ParseURL(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := faultproxy.Start("slow", opt.InitAddress[0])
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{proxy.Addr()}, DisableRetry: true})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	s, err := redisstore.New(t.Context(), client, &redisstore.Config{Prefix: "idemtest:" + rand.Text()[:10] + ":", OpTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cr, err := s.Claim(t.Context(), store.ClaimParams{Key: "slow/" + rand.Text(), Owner: "o", LeaseTTL: time.Minute, Retention: time.Hour})
	if err != nil || cr.Status != store.ClaimAcquired {
		t.Fatalf("Claim = (%v, %v), want acquired", cr.Status, err)
	}
	lease := cr.Lease
	if err := proxy.Latency(time.Second); err != nil {
		t.Fatal(err)
	}
	const deadline = 100 * time.Millisecond
	ctx, cancel := context.WithTimeout(t.Context(), deadline)
	defer cancel()
	start := time.Now()
	err = s.Renew(ctx, lease)
	if took := time.Since(start); err == nil || took > deadline+50*time.Millisecond {
		t.Fatalf("Renew with a %s deadline through a 1s latency = %v after %s, want an error within %s", deadline, err, took, deadline+50*time.Millisecond)
	}
}
