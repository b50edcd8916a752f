package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/internal/floorbench"
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

func report(b *testing.B, name string, p floorbench.Phase) {
	b.ReportMetric(p.OpsPerSec(), name+"-ops/s")
	b.ReportMetric(float64(p.P50.Nanoseconds())/1e3, name+"-p50-µs")
	b.ReportMetric(float64(p.P99.Nanoseconds())/1e3, name+"-p99-µs")
}

func measure(b *testing.B, n, conc int, op func(i int) error) floorbench.Phase {
	b.Helper()
	p, err := floorbench.Measure(n, conc, op)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

var benchValue = []byte(`{"id":"ch_1","amount":1999}`)

func benchFn(context.Context) ([]byte, error) { return benchValue, nil }

// eachConc runs bench at concurrency 1 and 64.
func eachConc(b *testing.B, bench func(b *testing.B, conc int)) {
	for _, conc := range []int{1, 64} {
		b.Run("c"+strconv.Itoa(conc), func(b *testing.B) { bench(b, conc) })
	}
}

// BenchmarkFirstExecution: claim and complete on a new key, two round trips.
// Floor: a raw SET of a new key with the same client, one round trip. The
// bar is rate-vs-set ≥ 0.45.
//
// A second floor, for diagnosis: the store's own two commands with no
// engine around them, the claim's raw SET … NX GET and the completion
// script, on records shaped like the store's (an owner token of the
// engine's length and, as in these runs, no fingerprint). rate-vs-set
// divided by rate-vs-twostep is how close two round trips with a fenced
// completion in Lua come to the bar on this server before the engine does
// anything.
func BenchmarkFirstExecution(b *testing.B) {
	lib, err1 := os.ReadFile("lua/lib.lua")
	body, err2 := os.ReadFile("lua/complete.lua")
	if err := errors.Join(err1, err2); err != nil {
		b.Fatal(err)
	}
	complete := rueidis.NewLuaScript(string(lib) + "\n" + string(body))
	eachConc(b, func(b *testing.B, conc int) {
		client, e := benchServer(b)
		ctx := b.Context()
		floorbench.Compare(b, floorbench.Options{Conc: conc, Latency: true},
			func(i int) error {
				res, err := e.Run(ctx, "first:"+strconv.Itoa(i), benchFn, nil)
				if err == nil && res.Replayed {
					return fmt.Errorf("key %d replayed on its first call", i)
				}
				return err
			},
			floorbench.Floor{Name: "set", Op: func(i int) error {
				return client.Do(ctx, client.B().Set().Key("raw:"+strconv.Itoa(i)).Value(string(benchValue)).Ex(time.Hour).Build()).Error()
			}},
			floorbench.Floor{Name: "twostep", Op: func(i int) error {
				key := rawRecordKey(i)
				err := client.Do(ctx, client.B().Set().Key(key).Value(rawInProgress).Nx().Get().PxMilliseconds(86430000).Build()).Error()
				if err != nil && !rueidis.IsRedisNil(err) {
					return err
				}
				done, err := complete.Exec(ctx, client, []string{key}, []string{rawOwner, "1", rawOutcome, "idem:done"}).AsInt64()
				if err == nil && done != 1 {
					err = fmt.Errorf("completion script refused raw record %d", i)
				}
				return err
			}})
		reportScriptTime(b, client)
	})
}

// reportScriptTime reports the server's time per script call, from INFO
// commandstats: the completion script's, which the engine and the twostep
// floor both run, and the part of a first execution's cost that a SET
// does not have.
func reportScriptTime(b *testing.B, client rueidis.Client) {
	b.Helper()
	info, err := client.Do(b.Context(), client.B().Info().Section("commandstats").Build()).ToString()
	if err != nil {
		b.Fatal(err)
	}
	_, stats, _ := strings.Cut(info, "cmdstat_evalsha:")
	_, perCall, _ := strings.Cut(stats, "usec_per_call=")
	perCall, _, _ = strings.Cut(perCall, ",")
	usec, err := strconv.ParseFloat(perCall, 64)
	if err != nil {
		b.Fatalf("no EVALSHA time in INFO commandstats: %v", err)
	}
	b.ReportMetric(usec, "script-server-µs")
}

// BenchmarkReplay: a completed key, one round trip. Floor: a raw GET of an
// existing key with the same client. The bar is rate-vs-get ≥ 0.90.
func BenchmarkReplay(b *testing.B) {
	eachConc(b, func(b *testing.B, conc int) {
		client, e := benchServer(b)
		ctx := b.Context()
		const keys = 1024
		for i := range keys {
			if _, err := e.Run(ctx, "replay:"+strconv.Itoa(i), benchFn, nil); err != nil {
				b.Fatal(err)
			}
			if err := client.Do(ctx, client.B().Set().Key("raw:"+strconv.Itoa(i)).Value(string(benchValue)).Build()).Error(); err != nil {
				b.Fatal(err)
			}
			if err := client.Do(ctx, client.B().Set().Key(rawRecordKey(i)).Value(rawCompleted).Build()).Error(); err != nil {
				b.Fatal(err)
			}
		}
		floorbench.Compare(b, floorbench.Options{Conc: conc, Latency: true},
			func(i int) error {
				res, err := e.Run(ctx, "replay:"+strconv.Itoa(i%keys), benchFn, nil)
				if err == nil && !res.Replayed {
					return fmt.Errorf("key %d ran again", i%keys)
				}
				return err
			},
			floorbench.Floor{Name: "get", Op: func(i int) error {
				return client.Do(ctx, client.B().Get().Key("raw:"+strconv.Itoa(i%keys)).Build()).Error()
			}},
			floorbench.Floor{Name: "setnxget", Op: func(i int) error {
				return client.Do(ctx, client.B().Set().Key(rawRecordKey(i%keys)).Value(rawInProgress).
					Nx().Get().PxMilliseconds(86430000).Build()).Error()
			}})
	})
}

// A second floor for the replay, for diagnosis only: the claim's command
// itself, a SET … NX GET of records and keys shaped like the store's,
// without the engine. rate-vs-setnxget is then what the engine's own work
// costs, and rate-vs-get over it what the command costs.
const (
	rawOwner      = "owner-0123456789abcdefgh"
	rawInProgress = "p1:30000:86400000:0:24:" + rawOwner
	rawOutcome    = `{"v":"eyJpZCI6ImNoXzEiLCJhbW91bnQiOjE5OTl9"}`
	rawCompleted  = "c1:0:" + rawOutcome
)

func rawRecordKey(i int) string {
	return "raw:{bench/" + strings.Repeat("0", 60) + strconv.Itoa(1000+i) + "}"
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
	b.ResetTimer()
	for round := range b.N {
		for _, conc := range []int{1, 64} {
			prefix := fmt.Sprintf("peer:%d:c%d:", round, conc)
			miss := measure(b, keys, conc, func(i int) error {
				res, err := e.Run(ctx, prefix+strconv.Itoa(i), benchFn, nil)
				if err == nil && res.Replayed {
					return fmt.Errorf("key %d replayed on its first call", i)
				}
				return err
			})
			hit := measure(b, keys, conc, func(i int) error {
				res, err := e.Run(ctx, prefix+strconv.Itoa(i), benchFn, nil)
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
