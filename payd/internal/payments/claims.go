package payments

import (
	"context"
	"errors"
	"time"

	"github.com/idemhq/idem/payd/internal/database"
)

// Claim is a payment a worker holds: its fence, the state it was claimed
// from, its age when claimed, by the database's clock, the time since a
// request under its key may last have been sent (negative if none can
// have been), whether other payments were due then too, and the W3C
// traceparent of the span that accepted it ("" if it was not traced).
type Claim struct {
	*Payment
	From        string
	Age         time.Duration
	SinceSent   time.Duration
	MoreDue     bool
	TraceParent string
}

// sinceSent converts a claim's ms since sent_at, -1 for none.
func sinceSent(ms int64) time.Duration {
	if ms < 0 {
		return -1
	}
	return time.Duration(ms) * time.Millisecond
}

// ClaimPending claims payment id for lease if it is still pending, as a
// worker does with a payment handed to it (Processor.Dispatch), or returns
// nil.
func (s *Store) ClaimPending(ctx context.Context, id string, lease time.Duration) (*Claim, error) {
	return s.claimPayment(ctx, s.sql.claimPending, lease.Milliseconds(), id)
}

// ClaimDue claims the payment due first for lease, or returns nil when
// none is due.
func (s *Store) ClaimDue(ctx context.Context, lease time.Duration) (*Claim, error) {
	return s.claimPayment(ctx, s.sql.claimDue, lease.Milliseconds())
}

func (s *Store) claimPayment(ctx context.Context, stmt string, args ...any) (*Claim, error) {
	var (
		from           string
		ageMs, sinceMs int64
		more           bool
		traceparent    string
	)
	var p *Payment
	err := s.db.Write(ctx, func(ctx context.Context) (err error) {
		p, err = scanPayment(s.db.QueryRow(ctx, stmt, args...), &from, &ageMs, &sinceMs, &more, &traceparent)
		return err
	})
	if errors.Is(err, database.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, wrap("claim a due payment", err)
	}
	return &Claim{Payment: p, From: from, Age: time.Duration(ageMs) * time.Millisecond, SinceSent: sinceSent(sinceMs), MoreDue: more,
		TraceParent: traceparent}, nil
}
