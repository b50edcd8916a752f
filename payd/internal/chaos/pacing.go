package chaos

import (
	"context"
	"math/rand/v2"
	"time"
)

// pollDelay is the wait before a client's nth read of a charge: 100ms,
// doubling to 1s.
func pollDelay(n int) time.Duration {
	return min(time.Second, 100*time.Millisecond<<min(n, 4)) // bounded shift: no overflow however long it polls
}

// backoff paces the retries of one request: full-jitter backoff from
// 50 ms doubling to 1 s, never sooner than the last answer's Retry-After,
// until patience runs out (TestClientHonorsRetryAfterAndPatience).
type backoff struct {
	rng      *rand.Rand // the client's stream: the waits, and the replicas it picks
	deadline time.Time
	n        int           // attempts so far
	after    time.Duration // the last answer's Retry-After
}

func newBackoff(rng *rand.Rand) *backoff {
	return &backoff{rng: rng, deadline: time.Now().Add(patience)}
}

// heard notes the answer to the latest attempt.
func (b *backoff) heard(a answer) { b.after = a.retryAfter }

// next waits for the next attempt, at once for the first. It reports
// false when the client gives up, patience spent, or ctx ends.
func (b *backoff) next(ctx context.Context) bool {
	b.n++
	if b.n == 1 {
		return ctx.Err() == nil
	}
	if !time.Now().Before(b.deadline) {
		return false
	}
	return sleepCtx(ctx, max(between(b.rng, 0, retryDelay(b.n-1)), b.after))
}

// retryDelay caps the full-jitter backoff before a client's retry: 50ms,
// doubling to 1s.
func retryDelay(attempt int) time.Duration {
	return min(time.Second, 50*time.Millisecond<<min(attempt, 5))
}

// sleepCtx sleeps d, or reports false if ctx ends first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
