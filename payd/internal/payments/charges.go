package payments

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

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

// Filter selects the payments List returns: those with Reference, if it
// is not "", created in [CreatedFrom, CreatedBefore), each bound left out
// if zero. Times count to the millisecond payd keeps: a bound between two
// milliseconds is rounded up, so no payment outside the range is
// returned.
type Filter struct {
	Reference                  string
	CreatedFrom, CreatedBefore time.Time
}

// List returns up to page.Limit of the account's payments that f selects,
// oldest first (by created time, then id), after the payment page.After,
// and whether more follow. A payment created while a client pages arrives
// on a later page: none is skipped or repeated. It returns ErrNotFound if
// page.After is no payment of the account's.
func (s *Store) List(ctx context.Context, accountID string, f Filter, page Page) ([]*Payment, bool, error) {
	afterAt, afterID := int64(math.MinInt64), ""
	if page.After != "" {
		p, err := s.Get(ctx, accountID, page.After)
		if err != nil {
			return nil, false, fmt.Errorf("payments: list after %s: %w", page.After, err)
		}
		afterAt, afterID = millis(p.CreatedAt), p.ID
	}
	from, before := int64(math.MinInt64), int64(math.MaxInt64)
	if !f.CreatedFrom.IsZero() {
		from = ceilMillis(f.CreatedFrom)
	}
	if !f.CreatedBefore.IsZero() {
		before = ceilMillis(f.CreatedBefore)
	}
	query, args := s.sql.listPayments, []any{accountID, from, before, afterAt, afterID, page.Limit + 1}
	if f.Reference != "" {
		query, args = s.sql.listByReference, append(args, f.Reference)
	}
	rs, err := s.db.Query(ctx, query, args...)
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

// ceilMillis is t in Unix milliseconds, rounded up: for a whole number of
// milliseconds c, c >= t and c < t hold exactly when they hold of
// ceilMillis(t).
func ceilMillis(t time.Time) int64 {
	ms := t.UnixMilli()
	if t.Sub(time.UnixMilli(ms)) > 0 {
		ms++
	}
	return ms
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
