package pgstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/idemhttp"
	"github.com/idemhq/idem/pgstore"
)

// These examples need a PostgreSQL server, so they are compiled but not run.

// A durable engine on PostgreSQL, shared by every replica of a service: a
// retry of order-1234 on any of them gets the recorded charge back.
func Example() {
	ctx := context.Background()
	// The pool must reach the primary (the writer endpoint), never a
	// replica or a read-only endpoint: a claim writes.
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	store, err := pgstore.New(ctx, pool, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	// Migrate creates the schema "idem" and its tables, once, at start.
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	engine, err := idem.New(store, &idem.Config{Namespace: "charges"})
	if err != nil {
		log.Fatal(err)
	}

	res, err := idem.Do(ctx, engine, "order-1234", func(ctx context.Context) (string, error) {
		lease, _ := idem.LeaseFrom(ctx)
		// The provider de-duplicates on ProviderKey, the same for every
		// retry of the key, so a rerun after a crash charges nothing twice.
		return chargeCard(ctx, lease.ProviderKey(), 1999)
	}, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Value, "replayed:", res.Replayed)
}

// The transactional mode: the payment row and the outcome commit in one
// transaction, or neither does. payments is the service's own table, in
// the database of the store. DoTx is RunTx for typed values.
func Example_transaction() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	store, err := pgstore.New(ctx, pool, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	engine, err := idem.New(store, &idem.Config{Namespace: "payments"})
	if err != nil {
		log.Fatal(err)
	}

	accept := func(ctx context.Context, tx pgx.Tx) (string, error) {
		// fn writes in tx and neither commits nor rolls it back: the engine
		// does, with the outcome.
		var id string
		err := tx.QueryRow(ctx, `INSERT INTO payments (amount) VALUES ($1) RETURNING id`, 1999).Scan(&id)
		return id, err
	}
	res, err := idem.DoTx(ctx, engine, "order-1234", accept, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("payment", res.Value, "replayed:", res.Replayed)
}

// An HTTP route whose handler writes in the transaction that records its
// response: a retried POST replays the response, and the payment row was
// written once.
func Example_middlewareTx() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	store, err := pgstore.New(ctx, pool, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	engine, err := idem.New(store, &idem.Config{Namespace: "payments"})
	if err != nil {
		log.Fatal(err)
	}

	protect, err := idemhttp.MiddlewareTx[pgx.Tx](engine, merchant, nil)
	if err != nil {
		log.Fatal(err)
	}
	createPayment := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tx, _ := idemhttp.TxFrom[pgx.Tx](r.Context())
		var id string
		err := tx.QueryRow(r.Context(), `INSERT INTO payments (amount) VALUES ($1) RETURNING id`, 1999).Scan(&id)
		if err != nil {
			// A 503 is a RetryStatuses status: the row and the claim roll
			// back, and the client may retry with the same key.
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(map[string]string{"id": id})
	})
	mux := http.NewServeMux()
	mux.Handle("POST /payments", protect(createPayment))
	log.Fatal(http.ListenAndServe("127.0.0.1:8080", mux))
}

// chargeCard stands in for a payment provider's client.
func chargeCard(ctx context.Context, idempotencyKey string, amount int64) (string, error) {
	return "ch_" + idempotencyKey[:8], nil
}

// merchant names the caller, as an authentication middleware in front has
// checked it; keys are scoped to it.
func merchant(r *http.Request) (string, error) {
	user, _, ok := r.BasicAuth()
	if !ok {
		return "", errors.New("not authenticated")
	}
	return user, nil
}
