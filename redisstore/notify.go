package redisstore

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// Waiting works in three steps, so that no completion is missed:
//
//  1. The Store holds one subscription to its channel for its whole life,
//     confirmed before New returns.
//  2. A waiter registers locally, then runs the wait script, which checks,
//     atomically, that the record is still in progress with the fence the
//     waiter saw, and marks it as waited on.
//  3. Whatever ends that fence (complete, release, takeover) publishes the
//     record's key if it was marked, and the subscription wakes the local
//     waiters of that key.
//
// If the subscription drops, messages may be lost while it reconnects: on
// every resubscription all waiters are woken to look again
// (TestResubscribeWakesWaiters), and each waiter also re-reads the record
// every PollInterval (TestPollingCoversLostNotifications).

// subscribe starts the Store's subscription and returns once the server has
// confirmed it, or with an error if it cannot within OpTimeout.
func (s *Store) subscribe(ctx context.Context) error {
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.stop = stop
	confirmed := make(chan struct{})
	var subscribed atomic.Bool
	hooked := rueidis.WithOnSubscriptionHook(runCtx, func(sub rueidis.PubSubSubscription) {
		if sub.Kind != "subscribe" {
			return
		}
		if !subscribed.Swap(true) {
			// The first subscription: New is waiting for it and nobody can
			// have waited yet. Waking all here would race with the first
			// waiters and wake them for nothing.
			close(confirmed)
			return
		}
		// A resubscription: messages may have been lost meanwhile.
		s.waiters.WakeAll(struct{}{})
	})
	go func() {
		defer close(s.stopped)
		backoff := 50 * time.Millisecond
		for {
			err := s.client.Receive(hooked, s.client.B().Subscribe().Channel(s.channel).Build(), func(m rueidis.PubSubMessage) {
				s.waiters.Wake(m.Message, struct{}{})
			})
			if runCtx.Err() != nil {
				return
			}
			s.cfg.Logger.Warn("redisstore: notification subscription ended; resubscribing, waiters fall back to polling meanwhile",
				slog.String("channel", s.channel), slog.Any("error", err))
			s.waiters.WakeAll(struct{}{})
			select {
			case <-runCtx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
		}
	}()
	timer := time.NewTimer(s.cfg.OpTimeout)
	defer timer.Stop()
	select {
	case <-confirmed:
		return nil
	case <-timer.C:
	case <-ctx.Done():
	}
	s.stop()
	<-s.stopped
	return fmt.Errorf("redisstore: subscribe to %s: not confirmed within %s", s.channel, s.cfg.OpTimeout)
}

// Wait implements store.Store.
func (s *Store) Wait(ctx context.Context, key string, fence int64) error {
	rkey := s.recordKey(key)
	woken := s.waiters.Add(rkey)
	defer s.waiters.Remove(rkey, woken)
	args := []string{strconv.FormatInt(fence, 10)}
	for {
		// A context of its own, not a shared deadline (Store.op): waits are
		// rare, and ctx, whose cancellation must reach the script, often
		// ends sooner than OpTimeout.
		opCtx, cancel := context.WithTimeout(ctx, s.cfg.OpTimeout)
		held, err := s.wait.Exec(opCtx, s.client, []string{rkey}, args).AsInt64()
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			return s.failed(opCtx, "wait", err)
		}
		if held != 1 {
			return nil
		}
		poll := time.NewTimer(s.cfg.PollInterval)
		select {
		case <-woken:
			poll.Stop()
			return nil
		case <-ctx.Done():
			poll.Stop()
			return ctx.Err()
		case <-poll.C:
		}
	}
}
