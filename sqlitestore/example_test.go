package sqlitestore_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/sqlitestore"
)

// A durable engine on a local SQLite file: open, create the store, migrate
// once at start, then run.
func Example() {
	dir, err := os.MkdirTemp("", "idem-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()

	db, err := sqlitestore.OpenDB(ctx, filepath.Join(dir, "app.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	store, err := sqlitestore.New(db, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	engine, err := idem.New(store, nil)
	if err != nil {
		log.Fatal(err)
	}

	charge := func(context.Context) ([]byte, error) { return []byte("ch_1"), nil }
	for range 2 {
		res, err := engine.Run(ctx, "order-1234", charge, nil)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s replayed=%t\n", res.Value, res.Replayed)
	}
	// Output:
	// ch_1 replayed=false
	// ch_1 replayed=true
}

// The transactional mode: the payment row and the idempotency record
// commit in one transaction, or neither does.
func Example_transaction() {
	dir, err := os.MkdirTemp("", "idem-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()

	db, err := sqlitestore.OpenDB(ctx, filepath.Join(dir, "app.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	store, err := sqlitestore.New(db, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE payments (id TEXT PRIMARY KEY, amount INTEGER NOT NULL)`); err != nil {
		log.Fatal(err)
	}
	engine, err := idem.New(store, nil)
	if err != nil {
		log.Fatal(err)
	}

	accept := func(ctx context.Context, tx *sql.Tx) ([]byte, error) {
		_, err := tx.ExecContext(ctx, `INSERT INTO payments (id, amount) VALUES ('pay_1', 1999)`)
		return []byte("pay_1"), err
	}
	for range 2 {
		res, err := idem.RunTx(ctx, engine, "order-1234", accept, nil)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s replayed=%t\n", res.Value, res.Replayed)
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM payments`).Scan(&n); err != nil {
		log.Fatal(err)
	}
	fmt.Println("payments:", n)
	// Output:
	// pay_1 replayed=false
	// pay_1 replayed=true
	// payments: 1
}
