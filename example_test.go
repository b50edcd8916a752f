package idem_test

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/memstore"
)

type Charge struct {
	ID     string `json:"id"`
	Amount int64  `json:"amount"`
}

// Do runs the charge once; the retry gets the recorded charge back.
func ExampleDo() {
	engine, err := idem.New(memstore.New(), nil)
	if err != nil {
		panic(err)
	}
	chargeCard := func(ctx context.Context) (Charge, error) {
		fmt.Println("charging the card")
		return Charge{ID: "ch_1", Amount: 1999}, nil
	}
	for range 2 {
		res, err := idem.Do(context.Background(), engine, "order-1234", chargeCard, nil)
		fmt.Println(res.Value.ID, res.Value.Amount, res.Replayed, err)
	}
	// Output:
	// charging the card
	// ch_1 1999 false <nil>
	// ch_1 1999 true <nil>
}

var ErrCardDeclined = errors.New("card declined")

// Errors are outcomes too: a decline is recorded and replayed, and a
// registered error still matches errors.Is after replay.
func Example_errorReplay() {
	engine, err := idem.New(memstore.New(), &idem.Config{
		Errors: map[string]error{"card_declined": ErrCardDeclined},
	})
	if err != nil {
		panic(err)
	}
	chargeCard := func(ctx context.Context) (Charge, error) {
		fmt.Println("asking the bank")
		return Charge{}, fmt.Errorf("charge order-1234: %w", ErrCardDeclined)
	}
	for range 2 {
		res, err := idem.Do(context.Background(), engine, "order-1234", chargeCard, nil)
		var re *idem.ReplayedError
		if errors.As(err, &re) {
			fmt.Printf("replayed %t: %v (code %s, declined %t)\n", res.Replayed, err, re.Code, errors.Is(err, ErrCardDeclined))
		} else {
			fmt.Printf("replayed %t: %v (declined %t)\n", res.Replayed, err, errors.Is(err, ErrCardDeclined))
		}
	}
	// Output:
	// asking the bank
	// replayed false: charge order-1234: card declined (declined true)
	// replayed true: charge order-1234: card declined (code card_declined, declined true)
}

// A key reused for a different request is refused, and the first request's
// outcome is not revealed.
func Example_fingerprintMismatch() {
	engine, err := idem.New(memstore.New(), nil)
	if err != nil {
		panic(err)
	}
	charge := func(amount int64) func(context.Context) (Charge, error) {
		return func(context.Context) (Charge, error) { return Charge{ID: "ch_1", Amount: amount}, nil }
	}
	ctx := context.Background()
	res, err := idem.Do(ctx, engine, "order-1234", charge(1999), &idem.RunOptions{Fingerprint: "amount=1999"})
	fmt.Println(res.Value.Amount, err)
	res, err = idem.Do(ctx, engine, "order-1234", charge(5000), &idem.RunOptions{Fingerprint: "amount=5000"})
	fmt.Println(res.Value.Amount, err, errors.Is(err, idem.ErrMismatch))
	// Output:
	// 1999 <nil>
	// 0 idem: key reused with a different fingerprint true
}

// A concurrent caller waits for the holder's outcome instead of running fn
// a second time.
func Example_waiting() {
	engine, err := idem.New(memstore.New(), nil)
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	started, finish := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		res, _ := idem.Do(ctx, engine, "order-1234", func(context.Context) (Charge, error) {
			close(started)
			<-finish
			return Charge{ID: "ch_1", Amount: 1999}, nil
		}, nil)
		fmt.Println("holder got", res.Value.ID)
	})
	<-started
	wg.Go(func() {
		res, _ := idem.Do(ctx, engine, "order-1234", func(context.Context) (Charge, error) {
			panic("never runs: the key is held")
		}, nil)
		fmt.Println("waiter got", res.Value.ID, "replayed", res.Replayed)
	})
	close(finish)
	wg.Wait()
	// Unordered output:
	// holder got ch_1
	// waiter got ch_1 replayed true
}

// fn gets its lease from the context: ProviderKey is a stable idempotency
// key for a downstream provider, the same on every retry of order-1234,
// and the fence guards writes.
func ExampleLeaseFrom() {
	engine, err := idem.New(memstore.New(), &idem.Config{Namespace: "charges"})
	if err != nil {
		panic(err)
	}
	engine.Run(context.Background(), "order-1234", func(ctx context.Context) ([]byte, error) {
		lease, _ := idem.LeaseFrom(ctx)
		fmt.Println("store key:", lease.StoreKey[:len("charges/")+8]+"…")
		fmt.Println("provider key:", len(lease.ProviderKey()), "characters")
		fmt.Println("fence:", lease.Fence)
		return nil, nil
	}, nil)
	// Output:
	// store key: charges/71983129…
	// provider key: 32 characters
	// fence: 1
}
