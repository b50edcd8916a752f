package pgstore

import (
	"context"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/internal/batch"
)

// ClaimBatch and CompleteBatch run calls as one batch, as the batchers do
// with calls that waited together.
func (s *Store) ClaimBatch(ctx context.Context, ps []idem.ClaimParams) ([]idem.ClaimResult, []error) {
	return split(s.claimBatch(ctx, ps))
}

func (s *Store) CompleteBatch(ctx context.Context, ls []idem.Lease, outcomes [][]byte) []error {
	cs := make([]completion, len(ls))
	for i := range ls {
		cs[i] = completion{ls[i], outcomes[i]}
	}
	_, errs := split(s.completeBatch(ctx, cs))
	return errs
}

// Arrays is a Store whose claims and completions always take the
// statements over arrays, each call a batch of its own.
type Arrays struct{ *Store }

func (a Arrays) Claim(ctx context.Context, p idem.ClaimParams) (idem.ClaimResult, error) {
	ctx, cancel := a.op(ctx)
	defer cancel()
	rs, err := a.claimMany(ctx, []idem.ClaimParams{p})
	if err != nil {
		return idem.ClaimResult{}, err
	}
	return rs[0].Val, rs[0].Err
}

func (a Arrays) Complete(ctx context.Context, l idem.Lease, outcome []byte) error {
	ctx, cancel := a.op(ctx)
	defer cancel()
	rs, err := a.completeMany(ctx, []completion{{l, outcome}})
	if err != nil {
		return err
	}
	return rs[0].Err
}

func split[T any](rs []batch.Result[T]) ([]T, []error) {
	vals, errs := make([]T, len(rs)), make([]error, len(rs))
	for i, r := range rs {
		vals[i], errs[i] = r.Val, r.Err
	}
	return vals, errs
}
