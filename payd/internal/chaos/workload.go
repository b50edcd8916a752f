package chaos

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// workload sends charges to the targets at cfg.Rate, the same charges to
// each.
type workload struct {
	seed    uint64
	cfg     *Config
	targets []*target
	started atomic.Int64
	wg      sync.WaitGroup
}

// run starts charges until runCtx ends; their clients go on until they
// are done or clientCtx ends. Wait for them with wait.
func (w *workload) run(runCtx, clientCtx context.Context) {
	rng := stream(w.seed, "arrivals")
	next := time.Now()
	for i := 0; ; i++ {
		next = next.Add(time.Duration(rng.ExpFloat64() / w.cfg.Rate * float64(time.Second)))
		if late := time.Since(next); late > time.Second {
			next = time.Now() // fell behind (every slot busy): no burst to catch up
		}
		if !sleepCtx(runCtx, time.Until(next)) {
			return
		}
		p := newPlan(w.seed, i, w.cfg)
		for _, t := range w.targets {
			select {
			case t.sem <- struct{}{}:
			case <-runCtx.Done():
				return
			}
			w.wg.Go(func() {
				defer func() { <-t.sem }()
				t.drive(clientCtx, p)
			})
		}
		w.started.Add(1)
	}
}

func (w *workload) wait() { w.wg.Wait() }
