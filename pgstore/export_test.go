package pgstore

import (
	"context"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/internal/batch"
	"github.com/idemhq/idem/store"
)

// Write is one call of a batch: a claim when Claim is set, otherwise the
// completion of Lease with Outcome.
type Write struct {
	Claim   *store.ClaimParams
	Lease   store.Lease
	Outcome []byte
}

// Batch runs ws as one batch, as the batcher does with calls that waited
// together. A call answered ErrAlone would run again on its own.
func (s *Store) Batch(ctx context.Context, ws []Write) ([]store.ClaimResult, []error) {
	in := make([]write, len(ws))
	for i, w := range ws {
		in[i] = write{claim: w.Claim, done: completion{w.Lease, w.Outcome}}
	}
	rs := s.runWrites(ctx, in)
	vals, errs := make([]store.ClaimResult, len(rs)), make([]error, len(rs))
	for i, r := range rs {
		vals[i], errs[i] = r.Val, r.Err
	}
	return vals, errs
}

// ClaimBatch and CompleteBatch run batches of one kind.
func (s *Store) ClaimBatch(ctx context.Context, ps []store.ClaimParams) ([]store.ClaimResult, []error) {
	ws := make([]Write, len(ps))
	for i := range ps {
		ws[i].Claim = &ps[i]
	}
	return s.Batch(ctx, ws)
}

func (s *Store) CompleteBatch(ctx context.Context, ls []store.Lease, outcomes [][]byte) []error {
	ws := make([]Write, len(ls))
	for i := range ls {
		ws[i] = Write{Lease: ls[i], Outcome: outcomes[i]}
	}
	_, errs := s.Batch(ctx, ws)
	return errs
}

var ErrAlone = errAlone

// ClaimAlone and CompleteAlone run a call as one does after its batch
// failed.
func (s *Store) ClaimAlone(ctx context.Context, p store.ClaimParams) (store.ClaimResult, error) {
	return s.claimAlone(ctx, p)
}

func (s *Store) CompleteAlone(ctx context.Context, l store.Lease, outcome []byte) error {
	return s.completeAlone(ctx, l, outcome)
}

// Arrays is a Store whose claims and completions always take the
// statements over arrays, each call a batch of its own.
type Arrays struct{ *Store }

func (a Arrays) Claim(ctx context.Context, p store.ClaimParams) (store.ClaimResult, error) {
	ctx, cancel := a.op(ctx)
	defer cancel()
	r, err := a.many(ctx, write{claim: &p})
	if lockTimedOut(err) { // as a batch's call would, it runs again alone
		return a.Store.Claim(ctx, p)
	}
	if err != nil {
		return store.ClaimResult{}, a.failed("claim", err)
	}
	return r.Val, nil
}

func (a Arrays) Complete(ctx context.Context, l store.Lease, outcome []byte) error {
	ctx, cancel := a.op(ctx)
	defer cancel()
	_, err := a.many(ctx, write{done: completion{l, outcome}})
	switch {
	case lockTimedOut(err):
		return a.Store.Complete(ctx, l, outcome)
	case err != nil && err != idem.ErrLeaseLost:
		return a.failed("complete", err)
	}
	return err
}

func (a Arrays) many(ctx context.Context, w write) (batch.Result[store.ClaimResult], error) {
	out := make([]batch.Result[store.ClaimResult], 1)
	if err := a.writeMany(ctx, []write{w}, out); err != nil {
		return out[0], err
	}
	return out[0], out[0].Err
}

// Statements are the SQL of the claim path, by name, for tests that run
// them by hand.
func (s *Store) Statements() map[string]string {
	return map[string]string{
		"claim": s.sql.claim, "claimMany": s.sql.claimMany,
		"complete": s.sql.complete, "completeMany": s.sql.completeMany,
		"claimTimed": s.sql.claimTimed, "completeTimed": s.sql.completeTimed,
	}
}

// SchemaOf returns the schema s keeps its records in.
func SchemaOf(s *Store) string { return s.cfg.Schema }
