package simulator

import (
	"bytes"
	"cmp"
	"container/heap"
	"context"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/idemhq/idem/webhook"
)

const (
	webhookTimeout    = 10 * time.Second // per delivery attempt
	webhookBackoff    = 100 * time.Millisecond
	webhookBackoffMax = 10 * time.Second
)

// sender delivers events from one goroutine, one at a time, each copy
// when it is due: in the order the events happened unless the faults
// delay, duplicate or reorder them. A copy not answered 2xx is due again
// after a backoff, without jitter, so that a run is reproducible.
type sender struct {
	url         string
	secret      []byte
	client      *http.Client
	maxAttempts int
	log         *slog.Logger
	stats       *counters
	epoch       time.Time // reorder windows are aligned on it

	mu    sync.Mutex
	queue deliveries
	seq   uint64
	wake  chan struct{} // a send wakes run to look at the queue again

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// delivery is one copy of an event on its way.
type delivery struct {
	body     []byte
	due      time.Time
	order    uint64 // among copies due at once: the event's sequence, or a random rank when reordering
	seq      uint64
	attempts int
}

func newSender(url string, secret []byte, client *http.Client, maxAttempts int, log *slog.Logger, stats *counters) *sender {
	ctx, cancel := context.WithCancel(context.Background())
	s := &sender{
		url:         url,
		secret:      secret,
		client:      client,
		maxAttempts: maxAttempts,
		log:         log,
		stats:       stats,
		epoch:       time.Now(),
		wake:        make(chan struct{}, 1),
		cancel:      cancel,
	}
	s.wg.Go(func() { s.run(ctx) })
	return s
}

// enqueue queues body as f says, with u, five draws from [0, 1): the
// delay and rank of the first copy, whether to duplicate, and the delay
// and rank of the second.
func (s *sender) enqueue(body []byte, f *Faults, u [5]float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	add := func(delay, rank float64) {
		s.seq++
		d := &delivery{body: body, due: now.Add(uniform(delay, 0, f.WebhookDelayMax)), order: s.seq, seq: s.seq}
		if w := f.WebhookReorder; w > 0 {
			d.due = s.epoch.Add((d.due.Sub(s.epoch)/w + 1) * w) // the end of its window
			d.order = uint64(rank * (1 << 53))
		}
		heap.Push(&s.queue, d)
	}
	add(u[0], u[1])
	if u[2] < f.WebhookDuplicateRate {
		add(u[3], u[4])
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *sender) run(ctx context.Context) {
	for {
		d, wait := s.next()
		if d != nil {
			s.deliver(ctx, d)
			continue
		}
		var timer <-chan time.Time
		if wait > 0 {
			timer = time.After(wait)
		}
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-timer:
		}
	}
}

// next pops the first copy that is due or, if none is, says how long until
// one is (0 if none is queued).
func (s *sender) next() (*delivery, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 {
		return nil, 0
	}
	if wait := time.Until(s.queue[0].due); wait > 0 {
		return nil, wait
	}
	return heap.Pop(&s.queue).(*delivery), 0
}

func (s *sender) deliver(ctx context.Context, d *delivery) {
	d.attempts++
	s.stats.webhookAttempts.Add(1)
	err := s.post(ctx, d.body)
	switch {
	case err == nil:
		s.stats.webhooksDelivered.Add(1)
		return
	case ctx.Err() != nil:
		return
	case d.attempts >= s.maxAttempts:
		s.stats.abandoned.Add(1)
		s.log.Warn("simulator: webhook abandoned", "attempts", d.attempts, "err", err)
		return
	}
	backoff := min(webhookBackoff<<min(d.attempts-1, 16), webhookBackoffMax)
	s.mu.Lock()
	d.due = time.Now().Add(backoff)
	heap.Push(&s.queue, d)
	s.mu.Unlock()
}

// post delivers body once, signed at the time of sending.
func (s *sender) post(ctx context.Context, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, webhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(webhook.DefaultHeader, webhook.Sign(s.secret, time.Now(), body))
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // so the connection is reused
	if resp.StatusCode/100 != 2 {
		return &statusError{resp.StatusCode}
	}
	return nil
}

type statusError struct{ status int }

func (e *statusError) Error() string { return "answered " + strconv.Itoa(e.status) }

// close stops run, abandoning what is queued, and closes the client's idle
// connections, whose goroutines would outlive the sender.
func (s *sender) close() {
	s.cancel()
	s.wg.Wait()
	s.client.CloseIdleConnections()
}

// deliveries is a min-heap of copies by due time, then order, then seq.
type deliveries []*delivery

func (q deliveries) Len() int { return len(q) }
func (q deliveries) Less(i, j int) bool {
	a, b := q[i], q[j]
	if c := a.due.Compare(b.due); c != 0 {
		return c < 0
	}
	return cmp.Or(cmp.Compare(a.order, b.order), cmp.Compare(a.seq, b.seq)) < 0
}
func (q deliveries) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *deliveries) Push(x any)   { *q = append(*q, x.(*delivery)) }
func (q *deliveries) Pop() any {
	old := *q
	d := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	return d
}
