package redisstore_test

import (
	"context"
	"crypto/rand"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"go.uber.org/goleak"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/internal/testenv"
	"github.com/idemhq/idem/redisstore"
	"github.com/idemhq/idem/store"
	"github.com/idemhq/idem/storetest"
)

// TestMain checks for leaked goroutines.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newClient connects to the Redis at url, closing the client when the
// test ends.
func newClient(t testing.TB, url string) rueidis.Client {
	t.Helper()
	opt, err := rueidis.ParseURL(url)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return newClientOpt(t, opt)
}

func newClientOpt(t testing.TB, opt rueidis.ClientOption) rueidis.Client {
	t.Helper()
	client, err := rueidis.NewClient(opt)
	if err != nil {
		t.Fatalf("connect to Redis %v: %v", opt.InitAddress, err)
	}
	t.Cleanup(client.Close)
	return client
}

// newStore returns a store on client whose keys no other test shares: a
// per-test prefix, never FLUSHALL.
func newStore(t testing.TB, client rueidis.Client, cfg redisstore.Config) *redisstore.Store {
	t.Helper()
	if cfg.Prefix == "" {
		cfg.Prefix = "idemtest:" + rand.Text()[:10] + ":"
	}
	s, err := redisstore.New(t.Context(), client, &cfg)
	if err != nil {
		t.Fatalf("redisstore.New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// conformanceConfig makes the polling fallback too slow to pass the
// suite's wake-up subtests: they must be won by notifications.
var conformanceConfig = redisstore.Config{PollInterval: time.Minute}

func TestConformance(t *testing.T) {
	client := newClient(t, testenv.RedisURL(t))
	storetest.Run(t, func(t *testing.T) store.Store { return newStore(t, client, conformanceConfig) })
}

// TestConformanceCluster runs the suite on a real three-master Redis
// Cluster: every script touches one hash slot.
func TestConformanceCluster(t *testing.T) {
	addrs := testenv.RedisCluster(t)
	client := newClientOpt(t, rueidis.ClientOption{InitAddress: addrs, ShuffleInit: true})
	if mode := client.Mode(); mode != rueidis.ClientModeCluster {
		t.Fatalf("client mode = %v, want cluster", mode)
	}
	storetest.Run(t, func(t *testing.T) store.Store { return newStore(t, client, conformanceConfig) })
}

// TestPollingCoversLostNotifications loses a notification on purpose (the
// record's waited-on mark is cleared before completion, so nothing is
// published) and checks that the waiter still returns, by polling.
func TestPollingCoversLostNotifications(t *testing.T) {
	client := newClient(t, testenv.RedisURL(t))
	const poll = 200 * time.Millisecond
	prefix := "idemtest:" + rand.Text()[:10] + ":"
	s := newStore(t, client, redisstore.Config{Prefix: prefix, PollInterval: poll})
	lease := acquire(t, s, "poll/"+rand.Text())
	woken := make(chan error, 1)
	go func() { woken <- s.Wait(t.Context(), lease.Key, lease.Fence) }()
	recordKey := prefix + "{" + lease.Key + "}"
	for { // until the waiter has marked the record: p<fence>:<lease>:<retention>:<waited>:…
		v, err := client.Do(t.Context(), client.B().Get().Key(recordKey).Build()).ToString()
		if err != nil {
			t.Fatal(err)
		}
		if f := strings.SplitN(v, ":", 5); len(f) == 5 && f[3] == "1" {
			f[3] = "0"
			if err := client.Do(t.Context(), client.B().Set().Key(recordKey).Value(strings.Join(f, ":")).Keepttl().Build()).Error(); err != nil {
				t.Fatal(err)
			}
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := s.Complete(t.Context(), lease, []byte("\x01v")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-woken:
		if err != nil {
			t.Fatalf("Wait = %v, want nil", err)
		}
	case <-time.After(5 * poll):
		t.Fatalf("waiter not back within %s of a lost notification (poll every %s)", 5*poll, poll)
	}
}

func acquire(t *testing.T, s store.Store, key string) store.Lease {
	t.Helper()
	cr, err := s.Claim(t.Context(), store.ClaimParams{Key: key, Owner: "o", LeaseTTL: time.Minute, Retention: time.Hour})
	if err != nil || cr.Status != store.ClaimAcquired {
		t.Fatalf("Claim = (%v, %v), want acquired", cr.Status, err)
	}
	return cr.Lease
}

func TestNewRefusesAnEvictingServer(t *testing.T) {
	addr := testenv.RedisServer(t, "--maxmemory-policy", "allkeys-lru")
	client := newClientOpt(t, rueidis.ClientOption{InitAddress: []string{addr}})
	_, err := redisstore.New(t.Context(), client, nil)
	if err == nil || !strings.Contains(err.Error(), "allkeys-lru") || !strings.Contains(err.Error(), "noeviction") {
		t.Fatalf("New on an allkeys-lru server = %v, want an error naming the policy and the fix", err)
	}
	// The operator can override the check.
	newStore(t, client, redisstore.Config{AllowEvictingServer: true})
}

func TestNewValidatesConfig(t *testing.T) {
	client := newClient(t, testenv.RedisURL(t))
	for _, cfg := range []redisstore.Config{
		{Prefix: "a{b}:"},
		{OpTimeout: -time.Second},
		{Replicas: -1},
	} {
		if _, err := redisstore.New(t.Context(), client, &cfg); err == nil {
			t.Errorf("New(%+v) = nil error, want one", cfg)
		}
	}
}

// TestScriptCacheFlushRecovers checks that scripts are re-sent after the
// server forgets them (NOSCRIPT), on a private server.
func TestScriptCacheFlushRecovers(t *testing.T) {
	client := newClientOpt(t, rueidis.ClientOption{InitAddress: []string{testenv.RedisServer(t)}})
	for _, cfg := range []redisstore.Config{{}, {Replicas: 1, ReplicaTimeout: time.Millisecond}} {
		e, err := idem.New(newStore(t, client, cfg), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := client.Do(t.Context(), client.B().ScriptFlush().Build()).Error(); err != nil {
			t.Fatal(err)
		}
		_, err = e.Run(t.Context(), "after-flush-"+rand.Text(), func(context.Context) ([]byte, error) { return []byte("v"), nil }, nil)
		if cfg.Replicas > 0 {
			// No replicas here: the record is written but not durable.
			if !errors.Is(err, redisstore.ErrNotDurable) {
				t.Fatalf("Run with Replicas after SCRIPT FLUSH = %v, want ErrNotDurable", err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("Run after SCRIPT FLUSH = %v", err)
		}
	}
}

// TestWaitReplicas checks WAIT after completion: acknowledged with a
// replica, reported as not durable without one.
func TestWaitReplicas(t *testing.T) {
	primary := testenv.RedisServer(t)
	host, port, _ := strings.Cut(primary, ":")
	testenv.RedisServer(t, "--replicaof", host, port)
	client := newClientOpt(t, rueidis.ClientOption{InitAddress: []string{primary}})
	waitForReplica(t, client)

	durable, err := idem.New(newStore(t, client, redisstore.Config{Replicas: 1, ReplicaTimeout: 2 * time.Second}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := durable.Run(t.Context(), "k", func(context.Context) ([]byte, error) { return []byte("v"), nil }, nil); err != nil {
		t.Fatalf("Run with one replica and Replicas 1 = %v", err)
	}

	greedy, err := idem.New(newStore(t, client, redisstore.Config{Replicas: 2, ReplicaTimeout: 50 * time.Millisecond}), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = greedy.Run(t.Context(), "k", func(context.Context) ([]byte, error) { return []byte("v"), nil }, nil)
	if !errors.Is(err, redisstore.ErrNotDurable) || !errors.Is(err, idem.ErrNotRecorded) {
		t.Fatalf("Run with Replicas 2 and one replica = %v, want ErrNotDurable reported as not recorded", err)
	}
}

func waitForReplica(t *testing.T, client rueidis.Client) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, err := client.Do(t.Context(), client.B().Info().Section("replication").Build()).ToString()
		if err == nil && strings.Contains(info, "connected_slaves:1") && strings.Contains(info, "state=online") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica never came online: %v\n%s", err, info)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestForeignRecordFailsClosed: a key holding something else than a record
// of this store (an older store's hash, say) refuses the claim with an
// error that says so, and fn never runs.
func TestForeignRecordFailsClosed(t *testing.T) {
	client := newClient(t, testenv.RedisURL(t))
	prefix := "idemtest:" + rand.Text()[:10] + ":"
	s := newStore(t, client, redisstore.Config{Prefix: prefix})
	e, err := idem.New(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Plant a hash where the engine's record for "order-1" will be.
	probe := &keyProbe{Store: s}
	ep, err := idem.New(probe, nil)
	if err != nil {
		t.Fatal(err)
	}
	ep.Run(t.Context(), "order-1", func(context.Context) ([]byte, error) { return nil, nil }, nil)
	recordKey := prefix + "{" + probe.key + "}"
	if err := client.Do(t.Context(), client.B().Del().Key(recordKey).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if err := client.Do(t.Context(), client.B().Hset().Key(recordKey).FieldValue().FieldValue("st", "c").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	ran := false
	_, err = e.Run(t.Context(), "order-1", func(context.Context) ([]byte, error) { ran = true; return nil, nil }, nil)
	if ran || err == nil || !strings.Contains(err.Error(), "something other than a record") {
		t.Fatalf("Run on a foreign record = %v (fn ran: %t), want a store error naming it and no run", err, ran)
	}
}

// keyProbe records the store key the engine derives.
type keyProbe struct {
	store.Store
	key string
}

func (p *keyProbe) Claim(ctx context.Context, cp store.ClaimParams) (store.ClaimResult, error) {
	p.key = cp.Key
	return p.Store.Claim(ctx, cp)
}

// TestResubscribeWakesWaiters kills the store's subscription connection
// under a blocked waiter (storetest.RunNotificationLoss). Polls are a
// minute apart, so only the subscription can wake waiters in time.
func TestResubscribeWakesWaiters(t *testing.T) {
	addr := testenv.RedisServer(t)
	cfg := conformanceConfig
	cfg.Prefix = "idemtest:resub:"
	s := newStore(t, newClientOpt(t, rueidis.ClientOption{InitAddress: []string{addr}}), cfg)
	// The test's own client, apart from the store's.
	client := newClientOpt(t, rueidis.ClientOption{InitAddress: []string{addr}})
	do := func(cmd rueidis.Completed) rueidis.RedisResult { return client.Do(t.Context(), cmd) }
	drop := func(t *testing.T) {
		// With RESP3 the subscription shares a connection with commands, so
		// find it by its subscription count rather than by its type.
		clients, err := do(client.B().ClientList().Build()).ToString()
		if err != nil {
			t.Fatal(err)
		}
		var killed int64
		for line := range strings.Lines(clients) {
			if !strings.Contains(line, " sub=1 ") {
				continue
			}
			_, field, _ := strings.Cut(line, "id=") // the first field, after RESP3's "txt:" on the first line
			field, _, _ = strings.Cut(field, " ")
			id, err := strconv.ParseInt(field, 10, 64)
			if err != nil {
				t.Fatalf("CLIENT LIST line %q: %v", line, err)
			}
			n, err := do(client.B().ClientKill().Id(id).Build()).AsInt64()
			if err != nil {
				t.Fatal(err)
			}
			killed += n
		}
		if killed != 1 {
			t.Fatalf("killed %d connections subscribed to one channel, want 1:\n%s", killed, clients)
		}
	}
	back := func(t *testing.T) bool {
		subs, err := do(client.B().PubsubNumsub().Channel(cfg.Prefix + "done").Build()).AsIntMap()
		if err != nil {
			t.Fatal(err)
		}
		return subs[cfg.Prefix+"done"] == 1
	}
	storetest.RunNotificationLoss(t, s, drop, back)
}
