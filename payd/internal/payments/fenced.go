package payments

import (
	"context"
	"errors"
	"log/slog"

	"github.com/idemhq/idem/payd/internal/database"
)

// leaseLost counts and logs a worker's outcome for t that was refused
// (ErrFenced), by why the fence moved: a newer claim is a real lease loss,
// a settlement or hold by a webhook or reconciliation meanwhile is a
// harmless race (TestLeaseLossesByCause).
func (p *Processor) leaseLost(ctx context.Context, t *task, log *slog.Logger) {
	cause, err := p.store.fencedBy(ctx, t.kind, t.id, t.attempts)
	p.cfg.Metrics.leaseLost(cause)
	switch cause {
	case lostToNewerClaim:
		log.Warn("payd: lease lost: another worker claimed the work after this one's lease expired; the outcome is refused")
	case lostToSettlement, lostToHold:
		// Usually benign: the provider's webhook often lands before the
		// response does, and settles first.
		log.Info("payd: outcome refused: a webhook or reconciliation settled or held the work first", slog.String("cause", cause))
	default:
		log.Warn("payd: lease lost: the outcome is refused, and why could not be read", slog.Any("error", err))
	}
}

// fencedBy says why a worker's claim of the payment or refund (kind) id,
// made as its attempt number attempts, no longer holds it. Only a claim
// counts an attempt; a webhook, reconciliation or correction moves the
// fence without one. So more attempts mean a newer claim (lostToNewerClaim);
// otherwise a final row was settled first (lostToSettlement), a held one
// held (lostToHold).
func (s *Store) fencedBy(ctx context.Context, kind, id string, attempts int) (string, error) {
	table := "payments"
	if kind == "refund" {
		table = "refunds"
	}
	var (
		now         int
		state, hold string
	)
	err := s.db.QueryRow(ctx, s.dialect.sql(`SELECT attempts, state, coalesce(hold, '') FROM `+table+` WHERE id = $1`), id).Scan(&now, &state, &hold)
	switch {
	case errors.Is(err, database.ErrNoRows):
		return lostUnknown, ErrNotFound
	case err != nil:
		return lostUnknown, wrap("read a fenced "+kind, err)
	case now > attempts:
		return lostToNewerClaim, nil
	case hold != "":
		return lostToHold, nil
	case state == StateSucceeded || state == StateFailed:
		return lostToSettlement, nil
	}
	return lostUnknown, nil
}
