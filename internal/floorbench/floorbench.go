// Package floorbench measures an operation against floors timed in the
// same benchmark run: the least the operation could cost (a raw SET, a
// primary-key SELECT, a map load). Absolute times on a shared machine are
// noise; ratios measured side by side are not, so every benchmark of this
// module reports ratios.
package floorbench

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Floor is one baseline to compare against. Its Name prefixes its metrics.
type Floor struct {
	Name string
	Op   func(i int) error
}

// Options tune Compare.
type Options struct {
	// Conc is how many goroutines run each operation at once. Default 1.
	Conc int
	// Latency also records every call's duration and reports p50 and p99.
	// Leave it off for operations of a few hundred nanoseconds, where
	// reading the clock twice a call would distort them.
	Latency bool
}

// Compare runs op and each floor b.N times, in alternating chunks so that
// noise on the machine hits them alike. It reports:
//
//   - ns/op: op's time per call (replacing the framework's figure, which
//     would count the floors too), and <floor>-ns/op for each floor;
//   - x-<floor>: op's time as a multiple of the floor's (a cost ratio);
//   - rate-vs-<floor>: op's throughput as a fraction of the floor's;
//   - with Latency, p50-µs and p99-µs of op and of each floor.
func Compare(b *testing.B, opts Options, op func(i int) error, floors ...Floor) {
	b.Helper()
	conc := max(opts.Conc, 1)
	chunk := 128 * conc
	subjects := append([]Floor{{Name: "", Op: op}}, floors...)
	wall := make([]time.Duration, len(subjects))
	var lat [][]time.Duration
	if opts.Latency {
		lat = make([][]time.Duration, len(subjects))
		for k := range lat {
			lat[k] = make([]time.Duration, b.N)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i += chunk {
		n := min(chunk, b.N-i)
		// Floors first, then op, in every chunk.
		for k := len(subjects) - 1; k >= 0; k-- {
			var l []time.Duration
			if lat != nil {
				l = lat[k]
			}
			d, err := run(conc, i, n, subjects[k].Op, l)
			if err != nil {
				b.Fatalf("%s call: %v", name(subjects[k].Name), err)
			}
			wall[k] += d
		}
	}
	b.StopTimer()
	perOp := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N) }
	b.ReportMetric(perOp(wall[0]), "ns/op")
	for k, f := range floors {
		b.ReportMetric(perOp(wall[k+1]), f.Name+"-ns/op")
		b.ReportMetric(float64(wall[0])/float64(wall[k+1]), "x-"+f.Name)
		b.ReportMetric(float64(wall[k+1])/float64(wall[0]), "rate-vs-"+f.Name)
	}
	for k := range lat {
		prefix := ""
		if k > 0 {
			prefix = floors[k-1].Name + "-"
		}
		p := Percentiles(lat[k])
		b.ReportMetric(float64(p.P50.Nanoseconds())/1e3, prefix+"p50-µs")
		b.ReportMetric(float64(p.P99.Nanoseconds())/1e3, prefix+"p99-µs")
	}
}

func name(n string) string {
	if n == "" {
		return "measured"
	}
	return "floor " + n
}

// Phase is one timed run of Ops calls.
type Phase struct {
	Ops      int
	Wall     time.Duration
	P50, P99 time.Duration
}

// OpsPerSec is the phase's throughput.
func (p Phase) OpsPerSec() float64 { return float64(p.Ops) / p.Wall.Seconds() }

// Measure calls op(i) for i in [0, n) from conc goroutines and times the
// whole and each call.
func Measure(n, conc int, op func(i int) error) (Phase, error) {
	lat := make([]time.Duration, n)
	wall, err := run(max(conc, 1), 0, n, op, lat)
	if err != nil {
		return Phase{}, err
	}
	p := Percentiles(lat)
	p.Ops, p.Wall = n, wall
	return p, nil
}

// Percentiles returns the p50 and p99 of lat, which it sorts.
func Percentiles(lat []time.Duration) Phase {
	if len(lat) == 0 {
		return Phase{}
	}
	slices.Sort(lat)
	return Phase{P50: lat[len(lat)/2], P99: lat[len(lat)*99/100]}
}

// run calls op(i) for i in [from, from+n) from conc goroutines and returns
// the wall time; with lat, it also stores each call's duration at lat[i].
func run(conc, from, n int, op func(i int) error, lat []time.Duration) (time.Duration, error) {
	call := func(i int) error {
		if lat == nil {
			return op(i)
		}
		t := time.Now()
		err := op(i)
		lat[i] = time.Since(t)
		return err
	}
	start := time.Now()
	if conc == 1 {
		for i := from; i < from+n; i++ {
			if err := call(i); err != nil {
				return 0, err
			}
		}
		return time.Since(start), nil
	}
	var (
		next   atomic.Int64
		failed atomic.Pointer[error]
		wg     sync.WaitGroup
	)
	next.Store(int64(from))
	for range conc {
		wg.Go(func() {
			for failed.Load() == nil {
				i := int(next.Add(1)) - 1
				if i >= from+n {
					return
				}
				if err := call(i); err != nil {
					failed.CompareAndSwap(nil, &err)
				}
			}
		})
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		return 0, *err
	}
	return time.Since(start), nil
}
