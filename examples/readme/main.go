// Two calls with one key: the first charges, the retry gets the same
// charge back without charging again.
package main

import (
	"context"
	"fmt"
	"log"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/memstore"
)

type Charge struct {
	ID     string `json:"id"`
	Amount int64  `json:"amount"`
}

func main() {
	ctx := context.Background()
	engine, err := idem.New(memstore.New(), nil)
	if err != nil {
		log.Fatal(err)
	}
	charge := func(ctx context.Context) (Charge, error) {
		lease, _ := idem.LeaseFrom(ctx)
		// Send lease.ProviderKey() as the payment provider's idempotency
		// key, and write business rows with lease.Fence.
		fmt.Println("charging the card under key", lease.ProviderKey())
		return Charge{ID: "ch_1", Amount: 1999}, nil
	}
	// The fingerprint ties the key to one request: a digest of its body.
	opts := &idem.RunOptions{Fingerprint: "amount=1999"}
	for range 2 { // a request and its retry
		res, err := idem.Do(ctx, engine, "order-1234", charge, opts)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s %d replayed=%t\n", res.Value.ID, res.Value.Amount, res.Replayed)
	}
}
