package api

import (
	"net/http"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/idemhttp"
	"github.com/idemhq/idem/payd/internal/database"
)

// TxType is the transaction type of the engine's store: the transaction
// the Idempotency-Key middleware runs a handler in, which records the
// handler's response, and which the domain writes what the handler creates
// through, so that both commit together. It is TxOf(pgdb.Tx) on
// PostgreSQL and TxOf(sqlitedb.Tx) on SQLite.
type TxType interface {
	// middleware is idemhttp.MiddlewareTx for the type.
	middleware(engine *idem.Engine, cfg *idemhttp.Config) (func(http.Handler) http.Handler, error)
}

// TxOf is the TxType of transactions of type Tx, which querier hands to the
// domain.
func TxOf[Tx any](querier func(Tx) database.Querier) TxType { return txOf[Tx](querier) }

type txOf[Tx any] func(Tx) database.Querier

// middleware runs a handler in a transaction of type Tx and passes that
// transaction on in the request's context, where the domain finds it
// (database.TxFrom). Keys are scoped to the authenticated account.
func (querier txOf[Tx]) middleware(engine *idem.Engine, cfg *idemhttp.Config) (func(http.Handler) http.Handler, error) {
	inTx, err := idemhttp.MiddlewareTx[Tx](engine, principal, cfg)
	if err != nil {
		return nil, err
	}
	return func(next http.Handler) http.Handler {
		return inTx(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if tx, ok := idemhttp.TxFrom[Tx](r.Context()); ok {
				r = r.WithContext(database.WithTx(r.Context(), querier(tx)))
			}
			next.ServeHTTP(w, r)
		}))
	}, nil
}
