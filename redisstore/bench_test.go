package redisstore_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/internal/testenv"
	"github.com/idemhq/idem/redisstore"
)

// The benchmarks run against a private redis-server started for them (no
// persistence, like the shared test server), so nothing else competes for
// it, and measure their floor with the same client in the same run.

func benchServer(b *testing.B) (rueidis.Client, *idem.Engine) {
	b.Helper()
	client := newClientOpt(b, rueidis.ClientOption{InitAddress: []string{testenv.RedisServer(b)}})
	e, err := idem.New(newStore(b, client, redisstore.Config{}), nil)
	if err != nil {
		b.Fatal(err)
	}
	return client, e
}

// phase is one timed run of n operations by conc workers.
type phase struct {
	ops      int
	wall     time.Duration
	p50, p99 time.Duration
}

func (p phase) opsPerSec() float64 { return float64(p.ops) / p.wall.Seconds() }

// run calls op(i) for i in [0, n) from conc workers and times each call.
func run(b *testing.B, n, conc int, op func(i int) error) phase {
	b.Helper()
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				t := time.Now()
				if err := op(i); err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
				lat[i] = time.Since(t)
			}
		})
	}
	wg.Wait()
	wall := time.Since(start)
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
	slices.Sort(lat)
	return phase{ops: n, wall: wall, p50: lat[n/2], p99: lat[n*99/100]}
}

func report(b *testing.B, name string, p phase) {
	b.ReportMetric(p.opsPerSec(), name+"-ops/s")
	b.ReportMetric(float64(p.p50.Microseconds()), name+"-p50-µs")
	b.ReportMetric(float64(p.p99.Microseconds()), name+"-p99-µs")
}

// BenchmarkVsFloor measures, at concurrency 1 and 64: raw SET then the
// engine's first execution (claim + complete: two round trips against
// one), and raw GET then the engine's replay (one round trip each). It
// reports ops/s, p50 and p99 of each, and the engine's throughput as a
// fraction of the floor's (first/set, replay/get). Each b.N is one round of
// 2,000 operations per phase.
func BenchmarkVsFloor(b *testing.B) {
	for _, conc := range []int{1, 64} {
		b.Run("c"+strconv.Itoa(conc), func(b *testing.B) {
			client, e := benchServer(b)
			ctx := b.Context()
			const n = 2000
			value := []byte(`{"id":"ch_1","amount":1999}`)
			fn := func(context.Context) ([]byte, error) { return value, nil }
			var set, first, get, replay []phase
			b.ResetTimer()
			for round := range b.N {
				prefix := fmt.Sprintf("bench:%d:", round)
				set = append(set, run(b, n, conc, func(i int) error {
					return client.Do(ctx, client.B().Set().Key(prefix+"raw"+strconv.Itoa(i)).Value(string(value)).Ex(time.Hour).Build()).Error()
				}))
				first = append(first, run(b, n, conc, func(i int) error {
					_, err := e.Run(ctx, prefix+strconv.Itoa(i), fn, nil)
					return err
				}))
				get = append(get, run(b, n, conc, func(i int) error {
					return client.Do(ctx, client.B().Get().Key(prefix+"raw"+strconv.Itoa(i)).Build()).Error()
				}))
				replay = append(replay, run(b, n, conc, func(i int) error {
					res, err := e.Run(ctx, prefix+strconv.Itoa(i), fn, nil)
					if err == nil && !res.Replayed {
						return fmt.Errorf("key %d was not replayed", i)
					}
					return err
				}))
			}
			b.StopTimer()
			s, f, g, r := median(set), median(first), median(get), median(replay)
			report(b, "set", s)
			report(b, "first", f)
			report(b, "get", g)
			report(b, "replay", r)
			b.ReportMetric(f.opsPerSec()/s.opsPerSec(), "first/set")
			b.ReportMetric(r.opsPerSec()/g.opsPerSec(), "replay/get")
		})
	}
}

// median returns the phase with the median throughput.
func median(ps []phase) phase {
	ps = slices.Clone(ps)
	slices.SortFunc(ps, func(a, b phase) int { return int(a.wall - b.wall) })
	return ps[len(ps)/2]
}

// BenchmarkPeerWorkload runs the workload of the peer benchmark of Node
// libraries (idempotency-redis, AWS Powertools, node-idempotency) on the
// same machine: 20,000 unique keys at concurrency 1 and 64 (miss), the same
// keys again (hit), then a storm of 200 keys x 50 callers all at once whose
// action sleeps 20ms. Run it with -benchtime=1x -count=3, as the peers ran
// three repetitions.
func BenchmarkPeerWorkload(b *testing.B) {
	_, e := benchServer(b)
	ctx := b.Context()
	const keys = 20000
	value := []byte(`{"id":"ch_1","amount":1999}`)
	fn := func(context.Context) ([]byte, error) { return value, nil }
	b.ResetTimer()
	for round := range b.N {
		for _, conc := range []int{1, 64} {
			prefix := fmt.Sprintf("peer:%d:c%d:", round, conc)
			miss := run(b, keys, conc, func(i int) error {
				res, err := e.Run(ctx, prefix+strconv.Itoa(i), fn, nil)
				if err == nil && res.Replayed {
					return fmt.Errorf("key %d replayed on its first call", i)
				}
				return err
			})
			hit := run(b, keys, conc, func(i int) error {
				res, err := e.Run(ctx, prefix+strconv.Itoa(i), fn, nil)
				if err == nil && !res.Replayed {
					return fmt.Errorf("key %d ran twice", i)
				}
				return err
			})
			report(b, fmt.Sprintf("miss-c%d", conc), miss)
			report(b, fmt.Sprintf("hit-c%d", conc), hit)
		}
		storm(b, e, fmt.Sprintf("storm:%d:", round))
	}
}

// storm starts 200 keys x 50 callers at once; the action sleeps 20ms. It
// fails unless each key ran exactly once and all its callers saw one value.
func storm(b *testing.B, e *idem.Engine, prefix string) {
	const keys, callers = 200, 50
	ctx := b.Context()
	var (
		executions [keys]atomic.Int32
		mu         sync.Mutex
		seen       [keys]map[string]bool
		wg         sync.WaitGroup
		failures   atomic.Int32
	)
	gate := make(chan struct{})
	for k := range keys {
		seen[k] = map[string]bool{}
		for range callers {
			wg.Go(func() {
				<-gate
				res, err := e.Run(ctx, prefix+strconv.Itoa(k), func(context.Context) ([]byte, error) {
					n := executions[k].Add(1)
					time.Sleep(20 * time.Millisecond)
					return []byte(strconv.Itoa(k) + "/" + strconv.Itoa(int(n))), nil
				}, nil)
				if err != nil {
					failures.Add(1)
					return
				}
				mu.Lock()
				seen[k][string(res.Value)] = true
				mu.Unlock()
			})
		}
	}
	start := time.Now()
	close(gate)
	wg.Wait()
	wall := time.Since(start)
	total := 0
	for k := range keys {
		total += int(executions[k].Load())
		if len(seen[k]) > 1 {
			b.Fatalf("storm: key %d callers saw %d different values", k, len(seen[k]))
		}
	}
	if total != keys || failures.Load() != 0 {
		b.Fatalf("storm: %d executions and %d failed calls, want %d and 0", total, failures.Load(), keys)
	}
	b.ReportMetric(float64(total), "storm-executions")
	b.ReportMetric(float64(wall.Milliseconds()), "storm-wall-ms")
}
