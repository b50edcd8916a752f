// Command quickstart shows idem on one process: a burst of duplicate
// "charge" requests, a retry after the fact, a reused key with a different
// amount, and a recorded decline, all against the in-memory store.
//
//	go run ./examples/quickstart
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/memstore"
)

type charge struct {
	ID     string `json:"id"`
	Amount int64  `json:"amount"`
}

var errDeclined = errors.New("card declined")

func main() {
	if err := run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	engine, err := idem.New(memstore.New(), &idem.Config{
		Namespace: "charges",
		Errors:    map[string]error{"card_declined": errDeclined},
	})
	if err != nil {
		return err
	}

	// The provider stands in for a card network: every call charges.
	var providerCalls atomic.Int32
	chargeCard := func(amount int64) func(context.Context) (charge, error) {
		return func(ctx context.Context) (charge, error) {
			lease, _ := idem.LeaseFrom(ctx)
			providerCalls.Add(1)
			time.Sleep(50 * time.Millisecond) // the provider is slow
			if amount > 100_000 {
				return charge{}, errDeclined
			}
			return charge{ID: "ch_" + lease.ProviderKey()[:12], Amount: amount}, nil
		}
	}
	fingerprint := func(amount int64) *idem.RunOptions {
		return &idem.RunOptions{Fingerprint: fmt.Sprint("amount=", amount)}
	}

	fmt.Println("1. Twenty impatient clicks on Pay for order-1001, all at once:")
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		responses = map[string]int{}
	)
	for range 20 {
		wg.Go(func() {
			res, err := idem.Do(ctx, engine, "order-1001", chargeCard(1999), fingerprint(1999))
			mu.Lock()
			defer mu.Unlock()
			responses[fmt.Sprintf("%s %d %v", res.Value.ID, res.Value.Amount, err)]++
		})
	}
	wg.Wait()
	for r, n := range responses {
		fmt.Printf("   %d clients got: %s\n", n, r)
	}
	fmt.Printf("   provider charged %d time(s)\n", providerCalls.Load())

	fmt.Println("2. The client retries an hour later with the same key:")
	res, err := idem.Do(ctx, engine, "order-1001", chargeCard(1999), fingerprint(1999))
	fmt.Printf("   got %s %d (replayed %t, err %v); provider calls still %d\n", res.Value.ID, res.Value.Amount, res.Replayed, err, providerCalls.Load())

	fmt.Println("3. A buggy client reuses the key for a different amount:")
	_, err = idem.Do(ctx, engine, "order-1001", chargeCard(5000), fingerprint(5000))
	fmt.Printf("   refused: %v (ErrMismatch %t)\n", err, errors.Is(err, idem.ErrMismatch))

	fmt.Println("4. A declined card is an outcome too, replayed on retry:")
	for range 2 {
		res, err = idem.Do(ctx, engine, "order-1002", chargeCard(250_000), fingerprint(250_000))
		fmt.Printf("   %v (replayed %t, still errors.Is declined: %t)\n", err, res.Replayed, errors.Is(err, errDeclined))
	}
	fmt.Printf("Provider calls in all: %d, for 2 orders.\n", providerCalls.Load())
	if providerCalls.Load() != 2 {
		return fmt.Errorf("provider charged %d times, want 2", providerCalls.Load())
	}
	return nil
}
