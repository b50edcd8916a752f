package pgstore

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
)

// Waiting works in three steps, so that no completion is missed:
//
//  1. The Store LISTENs on its channel on one connection of its own for its
//     whole life, in place before New returns.
//  2. A waiter registers locally, then runs the wait statement, which marks
//     the record as waited on only if it is still in progress with the fence
//     the waiter saw.
//  3. Whatever ends that fence (complete, release) learns from its own
//     statement whether the record was marked and, if so, NOTIFYs the
//     record's key once that statement has committed (in RunTx, in the same
//     transaction, delivered at its commit); the listener wakes the local
//     waiters of that key.
//
// A claim that takes over an expired lease does not notify: waiters of the
// expired fence wake at its expiry anyway, which bounds their wait. If the
// listening connection drops, notifications may be lost until it is back:
// every waiter is woken to look again when it drops and when it is back
// (TestListenerReconnectWakesWaiters), and each waiter also re-reads the
// record every PollInterval, which also covers a process that died between
// ending a fence and notifying.

// listen keeps a LISTEN connection open until ctx ends, sending the result
// of the first attempt on ready.
func (s *Store) listen(ctx context.Context, ready chan<- error) {
	defer s.done.Done()
	backoff := 50 * time.Millisecond
	first := true
	for {
		conn, err := s.listenConn(ctx)
		switch {
		case first:
			// New is waiting for this and nobody can have waited yet: waking
			// all here would race with the first waiters and wake them for
			// nothing.
			ready <- err
			if err != nil {
				return
			}
			first = false
		case err == nil:
			s.waiters.WakeAll(struct{}{}) // back: notifications may have been lost meanwhile
		}
		if err == nil {
			backoff = 50 * time.Millisecond
			err = s.relay(ctx, conn)
			conn.Close(context.Background())
		}
		if ctx.Err() != nil {
			return
		}
		s.cfg.Logger.Warn("pgstore: LISTEN connection lost; reconnecting, waiters fall back to polling meanwhile",
			slog.String("channel", s.channel), slog.Any("error", err))
		s.waiters.WakeAll(struct{}{})
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// relay wakes the waiters of each notification on conn until it fails.
func (s *Store) relay(ctx context.Context, conn *pgx.Conn) error {
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		s.waiters.Wake(n.Payload, struct{}{})
	}
}

// listenConn takes a connection out of the pool for good and LISTENs on it.
func (s *Store) listenConn(ctx context.Context) (*pgx.Conn, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("pgstore: listen: acquire a connection: %w", err)
	}
	conn := pc.Hijack()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{s.channel}.Sanitize()); err != nil {
		conn.Close(context.Background())
		return nil, fmt.Errorf("pgstore: listen on %s: %w", s.channel, err)
	}
	return conn, nil
}

// reapEvery sweeps expired records away every ReapInterval.
func (s *Store) reapEvery(ctx context.Context) {
	defer s.done.Done()
	t := time.NewTicker(s.cfg.ReapInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := s.Reap(ctx); err != nil && ctx.Err() == nil {
			s.cfg.Logger.Warn("pgstore: reaping expired records failed; trying again next interval", slog.Any("error", err))
		}
	}
}
