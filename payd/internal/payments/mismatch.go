package payments

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/idemhq/idem/payd/internal/database"
)

// Kinds of mismatch between payd and the provider. Each is about one
// provider key: a charge's or a refund's.
const (
	// MismatchLostCharge: the provider has a succeeded charge and payd no
	// succeeded payment for it. Money was taken that payd does not show.
	MismatchLostCharge = "provider_charge_without_payment"
	// MismatchMissingCharge: a payment succeeded and the provider has no
	// succeeded charge for it.
	MismatchMissingCharge = "payment_without_provider_charge"
	// MismatchAmount: the provider's charge under a payment's key differs
	// from the payment in amount, currency, charge id or reference (its
	// metadata). A payment not final is held until it is corrected.
	MismatchAmount = "amount_mismatch"
	// MismatchLostRefund: the provider made a refund payd has no
	// succeeded refund for.
	MismatchLostRefund = "provider_refund_without_refund"
	// MismatchMissingRefund: a refund succeeded and the provider has no
	// succeeded refund for it.
	MismatchMissingRefund = "refund_without_provider_refund"
	// MismatchRefundAmount: the provider's refund under a refund's key
	// differs from it in amount, charge or reference. A refund not final
	// is held until it is corrected.
	MismatchRefundAmount = "refund_amount_mismatch"
	// MismatchUnresolved: a payment or refund whose outcome is still
	// unknown near the end of the provider's key window. It is no longer
	// sent, only looked up, and needs an operator if it stays unknown.
	MismatchUnresolved = "outcome_unresolved"
)

// chargeKinds and refundKinds are the kinds a look at a charge's or a
// refund's key decides.
var (
	chargeKinds = []string{MismatchLostCharge, MismatchMissingCharge, MismatchAmount, MismatchUnresolved}
	refundKinds = []string{MismatchLostRefund, MismatchMissingRefund, MismatchRefundAmount, MismatchUnresolved}
)

// Mismatch is a disagreement between payd and the provider about one
// provider key that payd could not settle safely on its own. It stays open
// until a look at the key finds payd and the provider agreeing (a
// reconciliation run, or the correction an operator makes).
type Mismatch struct {
	ID          string `json:"id"`
	Kind        string `json:"kind"`
	ProviderKey string `json:"provider_key"`
	AccountID   string `json:"account_id,omitempty"`
	PaymentID   string `json:"payment_id,omitempty"`
	RefundID    string `json:"refund_id,omitempty"`
	// ProviderID is the provider's id of the charge or refund at issue.
	ProviderID string     `json:"provider_id,omitempty"`
	Detail     string     `json:"detail"`
	SubjectAt  time.Time  `json:"subject_at"` // when the charge, refund or payment at fault was created
	FoundAt    time.Time  `json:"found_at"`
	ResolvedAt *time.Time `json:"resolved_at,omitempty"`
}

// recordMismatch records m as open, or re-opens it, in q's transaction,
// and logs it: a mismatch is never silent.
func (s *Store) recordMismatch(ctx context.Context, q database.Querier, m *Mismatch) error {
	s.log.Warn("payd: mismatch with the provider", slog.String("kind", m.Kind), slog.String("provider_key", m.ProviderKey),
		slog.String("payment", m.PaymentID), slog.String("refund", m.RefundID), slog.String("provider_id", m.ProviderID),
		slog.String("detail", m.Detail))
	if m.ID == "" {
		m.ID = newID("mm_")
	}
	_, err := q.Exec(ctx, s.sql.recordMismatch, m.ID, m.Kind, m.ProviderKey, m.AccountID, m.PaymentID, m.RefundID,
		m.ProviderID, m.Detail, millis(m.SubjectAt))
	return wrap("record mismatch", err)
}

// resolveMismatches resolves the open mismatches of the given kinds about
// key but except, in q's transaction.
func (s *Store) resolveMismatches(ctx context.Context, q database.Querier, key string, kinds []string, except string) error {
	for _, k := range kinds {
		if k == except {
			continue
		}
		if _, err := q.Exec(ctx, s.sql.resolveMismatch, k, key); err != nil {
			return wrap("resolve mismatch", err)
		}
	}
	return nil
}

// OpenMismatches returns the mismatches not resolved, oldest first.
func (s *Store) OpenMismatches(ctx context.Context) ([]Mismatch, error) {
	return s.mismatches(ctx, s.sql.openMismatches)
}

// OpenMismatchesOf returns the mismatches not resolved about account's
// payments and refunds, oldest first: what the account may see of
// reconciliation (TestReconciliationEndpoint, TestTwoMerchants).
func (s *Store) OpenMismatchesOf(ctx context.Context, account string) ([]Mismatch, error) {
	return s.mismatches(ctx, s.sql.openMismatchesOf, account)
}

func (s *Store) mismatches(ctx context.Context, query string, args ...any) ([]Mismatch, error) {
	rs, err := s.db.Query(ctx, query, args...)
	if err != nil {
		return nil, wrap("list mismatches", err)
	}
	defer rs.Close()
	out := []Mismatch{}
	for rs.Next() {
		m, err := scanMismatch(rs)
		if err != nil {
			return nil, wrap("list mismatches", err)
		}
		out = append(out, *m)
	}
	return out, wrap("list mismatches", rs.Err())
}

// MismatchByID returns the mismatch id, open or resolved, or ErrNotFound.
func (s *Store) MismatchByID(ctx context.Context, id string) (*Mismatch, error) {
	m, err := scanMismatch(s.db.QueryRow(ctx, s.sql.mismatchByID, id))
	if errors.Is(err, database.ErrNoRows) {
		return nil, ErrNotFound
	}
	return m, wrap("read mismatch", err)
}

const mismatchColumns = `id, kind, provider_key, account_id, payment_id, refund_id, provider_id, detail, subject_at, found_at, coalesce(resolved_at, 0)`

func scanMismatch(row database.Row) (*Mismatch, error) {
	var (
		m                        Mismatch
		subject, found, resolved int64
	)
	if err := row.Scan(&m.ID, &m.Kind, &m.ProviderKey, &m.AccountID, &m.PaymentID, &m.RefundID, &m.ProviderID, &m.Detail,
		&subject, &found, &resolved); err != nil {
		return nil, err
	}
	m.SubjectAt, m.FoundAt = fromMillis(subject), fromMillis(found)
	if resolved != 0 {
		at := fromMillis(resolved)
		m.ResolvedAt = &at
	}
	return &m, nil
}
