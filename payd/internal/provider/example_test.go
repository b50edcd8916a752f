package provider_test

import (
	"context"
	"fmt"
	"net/http/httptest"

	"github.com/idemhq/idem/payd/internal/provider"
	"github.com/idemhq/idem/payd/internal/simulator"
)

// The ghost charge: the provider charges and the response is lost. The
// call is unknown, not failed, and a retry with the same key finds the
// charge instead of making a second one.
func ExampleClient() {
	sim := simulator.New(&simulator.Config{Faults: simulator.Faults{DropAfterChargeRate: 1}})
	defer sim.Close()
	srv := httptest.NewServer(sim.Handler())
	defer srv.Close()
	c, err := provider.NewClient(srv.URL, nil)
	if err != nil {
		panic(err)
	}
	defer c.CloseIdleConnections()

	ctx := context.Background()
	req := provider.ChargeRequest{IdempotencyKey: "pay_1", Amount: 1999, Currency: "usd"}
	_, err = c.Charge(ctx, req)
	fmt.Println(provider.KindOf(err))

	sim.SetFaults(simulator.Faults{})
	ch, err := c.Charge(ctx, req)
	fmt.Println(ch.Status, err, len(sim.Charges()))
	// Output:
	// unknown
	// succeeded <nil> 1
}
