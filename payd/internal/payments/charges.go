package payments

import (
	"context"
	"errors"
	"fmt"

	"github.com/idemhq/idem/payd/internal/database"
)

// Create inserts a pending payment: from then on it is due work. In a
// request's transaction (database.WithTx) it writes there, so the payment
// and the request's recorded response commit together. When ctx is traced,
// the payment keeps the context of its accept span, which its workers'
// spans continue (tracing.go).
func (s *Store) Create(ctx context.Context, np NewPayment) (*Payment, error) {
	id := newID("ch_")
	ctx, span := startSpan(ctx, "payd.payment.accept", paymentIDKey.String(id))
	var p *Payment
	err := s.inRequestTx(ctx, func(q database.Querier) (err error) {
		p, err = scanPayment(q.QueryRow(ctx, s.sql.insertPayment,
			id, np.AccountID, np.Amount, np.Currency, np.Reference, np.Description, encodeMetadata(np.Metadata),
			"payd_"+id, np.Reserve.Milliseconds(), nullable(traceparentOf(ctx))))
		return err
	})
	endSpan(span, err)
	return p, wrap("create payment", err)
}

// Get returns the account's payment id, or ErrNotFound.
func (s *Store) Get(ctx context.Context, accountID, id string) (*Payment, error) {
	p, err := scanPayment(s.db.QueryRow(ctx, s.sql.getPayment, id, accountID))
	if errors.Is(err, database.ErrNoRows) {
		return nil, ErrNotFound
	}
	return p, wrap("get payment", err)
}

// Page is a cursor into a listing: the last payment seen.
type Page struct {
	After string // payment id; "" starts at the beginning
	Limit int
}

// ListByReference returns up to page.Limit of the account's payments with
// reference, oldest first, after the payment page.After, and whether more
// follow.
func (s *Store) ListByReference(ctx context.Context, accountID, reference string, page Page) ([]*Payment, bool, error) {
	afterAt, afterID := int64(-1), ""
	if page.After != "" {
		p, err := s.Get(ctx, accountID, page.After)
		if err != nil {
			return nil, false, fmt.Errorf("payments: list after %s: %w", page.After, err)
		}
		afterAt, afterID = millis(p.CreatedAt), p.ID
	}
	rs, err := s.db.Query(ctx, s.sql.listByReference, accountID, reference, afterAt, afterID, page.Limit+1)
	if err != nil {
		return nil, false, wrap("list payments", err)
	}
	defer rs.Close()
	var out []*Payment
	for rs.Next() {
		p, err := scanPayment(rs)
		if err != nil {
			return nil, false, wrap("list payments", err)
		}
		out = append(out, p)
	}
	if err := rs.Err(); err != nil {
		return nil, false, wrap("list payments", err)
	}
	more := len(out) > page.Limit
	if more {
		out = out[:page.Limit]
	}
	return out, more, nil
}

// Backlog counts payments not yet final.
func (s *Store) Backlog(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.QueryRow(ctx, s.sql.countDue).Scan(&n)
	return n, wrap("count backlog", err)
}

func scanPayment(row database.Row, extra ...any) (*Payment, error) {
	var (
		p                Payment
		metadata         string
		created, updated int64
	)
	dest := append([]any{&p.ID, &p.AccountID, &p.Amount, &p.Currency, &p.Reference, &p.Description, &metadata,
		&p.State, &p.Fence, &p.Attempts, &p.ProviderKey, &p.ProviderChargeID, &p.FailureCode, &p.FailureMessage,
		&p.AmountRefunded, &p.Hold, &created, &updated}, extra...)
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	p.Metadata = decodeMetadata(metadata)
	p.CreatedAt, p.UpdatedAt = fromMillis(created), fromMillis(updated)
	return &p, nil
}
