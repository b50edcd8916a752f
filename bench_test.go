package idem_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"runtime"
	"strconv"
	"sync"
	"testing"

	"golang.org/x/sync/singleflight"

	"github.com/idemhq/idem/internal/floorbench"

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

// reportMem replaces the framework's allocation figures, which would count
// the floors too, with op's own.
func reportMem(b *testing.B, mem memPerOp) {
	b.ReportAllocs()
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
	replay := func(i int) error {
		res, err := e.Run(ctx, keys[i%benchKeys], fn, nil)
		if err == nil && !res.Replayed {
			return errors.New("not a replay")
		}
		return err
	}
	mem := measureMem(1000, func() { replay(0) })
	floorbench.Compare(b, floorbench.Options{}, replay,
		floorbench.Floor{Name: "floor", Op: func(i int) error {
			if _, ok := byDigest.Load(sha256.Sum256([]byte(keys[i%benchKeys]))); !ok {
				return errors.New("floor missed a key")
			}
			return nil
		}},
		floorbench.Floor{Name: "keyed", Op: func(i int) error {
			if _, ok := byKey.Load(derivedKey(keys[i%benchKeys])); !ok {
				return errors.New("keyed floor missed a key")
			}
			return nil
		}},
	)
	reportMem(b, mem)
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
	e := newEngine(b, memstore.NewWithLimits(memstore.Limits{MaxRecords: -1, MaxBytes: -1}), nil)
	keys := benchKeyNames("order-", b.N)
	floorKeys := benchKeyNames("floor-", b.N)
	var g singleflight.Group
	charged := []byte("charged")
	fn := value("charged")
	execute := func(key string) error {
		res, err := e.Run(ctx, key, fn, nil)
		if err == nil && res.Replayed {
			return errors.New("replayed a new key")
		}
		return err
	}
	memKeys := benchKeyNames("mem-", 1001)
	next := 0
	mem := measureMem(1000, func() { execute(memKeys[next]); next++ })
	floorbench.Compare(b, floorbench.Options{}, func(i int) error { return execute(keys[i]) },
		floorbench.Floor{Name: "floor", Op: func(i int) error {
			_, err, _ := g.Do(floorKeys[i], func() (any, error) { return charged, nil })
			return err
		}})
	reportMem(b, mem)
}
func mustNotRunB(b *testing.B) func(ctx context.Context) ([]byte, error) {
	return func(context.Context) ([]byte, error) {
		b.Error("fn ran on the replay path")
		return nil, nil
	}
}
