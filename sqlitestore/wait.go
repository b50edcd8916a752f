package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"time"
)

// Waiting never misses a change made through this Store:
//
//  1. A waiter registers for its key, then reads the record; if the fence
//     it waits on is no longer in progress it returns at once.
//  2. Whatever ends a fence through this Store (complete, release,
//     takeover, a transaction's commit) wakes the key's waiters after its
//     write commits.
//
// Either the waiter's read comes after the commit and sees it, or the
// waiter registered first and is woken. A change made by another process
// (or another Store) sharing the file wakes nobody here: each waiter
// re-reads its record every PollInterval to see it.

// waiters are the Store's waiters by key. A wake closes the key's slot,
// waking every waiter on it at once; later waiters get a new slot.
type waiters struct {
	mu     sync.Mutex
	byKey  map[string]*waitSlot
	closed bool
}

type waitSlot struct {
	ch chan struct{} // closed on wake
	n  int           // waiters holding the slot
}

func (w *waiters) add(key string) *waitSlot {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		sl := &waitSlot{ch: make(chan struct{})}
		close(sl.ch)
		return sl
	}
	sl := w.byKey[key]
	if sl == nil {
		sl = &waitSlot{ch: make(chan struct{})}
		w.byKey[key] = sl
	}
	sl.n++
	return sl
}

func (w *waiters) remove(key string, sl *waitSlot) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if sl.n--; sl.n == 0 && w.byKey[key] == sl {
		delete(w.byKey, key)
	}
}

// wake wakes the waiters of key.
func (w *waiters) wake(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if sl := w.byKey[key]; sl != nil {
		close(sl.ch)
		delete(w.byKey, key)
	}
}

// closeAll wakes every waiter, for good.
func (w *waiters) closeAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	for key, sl := range w.byKey {
		close(sl.ch)
		delete(w.byKey, key)
	}
}

// Wait implements store.Store. A change made through this Store wakes the
// waiter at once; one made by another process sharing the file is seen at
// the next poll, within Config.PollInterval.
func (s *Store) Wait(ctx context.Context, key string, fence int64) error {
	st, err := s.ready(ctx)
	if err != nil {
		return err
	}
	sl := s.waiters.add(key)
	defer s.waiters.remove(key, sl)
	var poll *time.Timer
	for {
		var one int
		err := st.held.QueryRowContext(ctx, key, fence).Scan(&one)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			return failed("wait", err)
		}
		if poll == nil {
			poll = time.NewTimer(s.cfg.PollInterval)
			defer poll.Stop()
		} else {
			poll.Reset(s.cfg.PollInterval)
		}
		select {
		case <-sl.ch:
			if s.closed.Load() {
				return ErrClosed
			}
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-poll.C:
		}
	}
}
