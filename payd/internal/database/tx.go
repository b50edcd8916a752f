package database

import "context"

type txKey struct{}

// WithTx returns ctx carrying tx, the transaction a request's handler runs
// in: the one that records the request's response under its
// Idempotency-Key. The domain writes what the request creates in it (see
// TxFrom), so the two commit together, or neither does.
func WithTx(ctx context.Context, tx Querier) context.Context {
	return context.WithValue(ctx, txKey{}, tx)
}

// TxFrom returns the transaction WithTx put in ctx; ok is false anywhere
// else.
func TxFrom(ctx context.Context) (tx Querier, ok bool) {
	tx, ok = ctx.Value(txKey{}).(Querier)
	return tx, ok
}
