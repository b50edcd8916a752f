package idem_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/idemhq/idem/memstore"
)

// The benchmarks measure their floors in the same run, on the same keys, and
// report the engine's cost as a ratio to each (x-floor, ...). Absolute times
// on a shared machine are noise; the ratios are the figures to track.

const benchKeys = 1024

func benchKeyNames(prefix string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = prefix + strconv.Itoa(i)
	}
	return keys
}

// A floor is the least the measured operation could cost, timed in the same
// run. Its name prefixes the metrics: <name>-ns/op and x-<name>.
type floor struct {
	name string
	run  func(i int)
}

// vsFloors runs op and each floor b.N times, interleaved in small chunks so
// that noise on the shared machine hits them alike. It reports op's time
// (ns/op, replacing the framework's figure, which would count the floors
// too), each floor's time, op's ratio to each floor, and op's allocations.
func vsFloors(b *testing.B, op func(i int), mem memPerOp, floors ...floor) {
	const chunk = 128
	b.ReportAllocs()
	var tOp time.Duration
	tFloors := make([]time.Duration, len(floors))
	b.ResetTimer()
	for i := 0; i < b.N; i += chunk {
		n := min(chunk, b.N-i)
		for k, f := range floors {
			t := time.Now()
			for j := i; j < i+n; j++ {
				f.run(j)
			}
			tFloors[k] += time.Since(t)
		}
		t := time.Now()
		for j := i; j < i+n; j++ {
			op(j)
		}
		tOp += time.Since(t)
	}
	b.StopTimer()
	b.ReportMetric(float64(tOp.Nanoseconds())/float64(b.N), "ns/op")
	for k, f := range floors {
		b.ReportMetric(float64(tFloors[k].Nanoseconds())/float64(b.N), f.name+"-ns/op")
		b.ReportMetric(float64(tOp)/float64(tFloors[k]), "x-"+f.name)
	}
	b.ReportMetric(mem.allocs, "allocs/op")
	b.ReportMetric(mem.bytes, "B/op")
}

type memPerOp struct{ allocs, bytes float64 }

// measureMem returns what one call of op allocates, averaged over n calls
// after a warm-up call.
func measureMem(n int, op func()) memPerOp {
	op()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range n {
		op()
	}
	runtime.ReadMemStats(&after)
	return memPerOp{
		allocs: float64(after.Mallocs-before.Mallocs) / float64(n),
		bytes:  float64(after.TotalAlloc-before.TotalAlloc) / float64(n),
	}
}

// BenchmarkReplay is the hit path: a completed key replayed from memstore.
// Two floors: "floor" is the bar's, hashing the key (SHA-256, as the engine
// does) plus a sync.Map load by the digest; "keyed" derives the printable
// store key as the engine must (namespace, SHA-256 in hex) and loads by it.
func BenchmarkReplay(b *testing.B) {
	ctx := b.Context()
	e := newEngine(b, memstore.New(), nil)
	keys := benchKeyNames("order-", benchKeys)
	var byDigest, byKey sync.Map
	for _, k := range keys {
		if _, err := e.Run(ctx, k, value("charged"), nil); err != nil {
			b.Fatal(err)
		}
		byDigest.Store(sha256.Sum256([]byte(k)), []byte("charged"))
		byKey.Store(derivedKey(k), []byte("charged"))
	}
	fn := mustNotRunB(b)
	replay := func(i int) {
		res, err := e.Run(ctx, keys[i%benchKeys], fn, nil)
		if err != nil || !res.Replayed {
			b.Fatalf("Run = (replayed %t, %v), want a replay", res.Replayed, err)
		}
	}
	vsFloors(b, replay, measureMem(1000, func() { replay(0) }),
		floor{"floor", func(i int) {
			if _, ok := byDigest.Load(sha256.Sum256([]byte(keys[i%benchKeys]))); !ok {
				b.Fatal("floor missed a key")
			}
		}},
		floor{"keyed", func(i int) {
			if _, ok := byKey.Load(derivedKey(keys[i%benchKeys])); !ok {
				b.Fatal("keyed floor missed a key")
			}
		}},
	)
}

// derivedKey builds a store key the way the engine does, in one allocation.
func derivedKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	var b [len("default/") + 2*sha256.Size]byte
	n := copy(b[:], "default/")
	hex.Encode(b[n:], sum[:])
	return string(b[:])
}

// BenchmarkFirstExecution is the miss path: every call claims a new key,
// runs fn and records its value. Floor: a singleflight call on a new key,
// the smallest "run once per key" in Go.
func BenchmarkFirstExecution(b *testing.B) {
	ctx := b.Context()
	e := newEngine(b, memstore.New(), nil)
	keys := benchKeyNames("order-", b.N)
	floorKeys := benchKeyNames("floor-", b.N)
	var g singleflight.Group
	charged := []byte("charged")
	fn := value("charged")
	execute := func(key string) {
		res, err := e.Run(ctx, key, fn, nil)
		if err != nil || res.Replayed {
			b.Fatalf("Run = (replayed %t, %v), want a first execution", res.Replayed, err)
		}
	}
	memKeys := benchKeyNames("mem-", 1001)
	next := 0
	mem := measureMem(1000, func() { execute(memKeys[next]); next++ })
	vsFloors(b, func(i int) { execute(keys[i]) }, mem,
		floor{"floor", func(i int) { g.Do(floorKeys[i], func() (any, error) { return charged, nil }) }})
}
func mustNotRunB(b *testing.B) func(ctx context.Context) ([]byte, error) {
	return func(context.Context) ([]byte, error) {
		b.Error("fn ran on the replay path")
		return nil, nil
	}
}
