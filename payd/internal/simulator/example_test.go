package simulator_test

import (
	"flag"
	"fmt"

	"github.com/idemhq/idem/payd/internal/simulator"
)

// A subcommand that runs the simulator as its own server: one flag per
// Config field, checked before New.
func ExampleConfig_RegisterFlags() {
	var cfg simulator.Config
	fs := flag.NewFlagSet("provider-sim", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8081", "address to listen on")
	cfg.RegisterFlags(fs)
	if err := fs.Parse([]string{"-seed", "7", "-drop-after-charge-rate", "0.1"}); err != nil {
		panic(err)
	}
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	sim := simulator.New(&cfg)
	defer sim.Close()
	// return sim.ListenAndServe(ctx, *addr)

	fmt.Println(*addr, cfg.Seed, cfg.DropAfterChargeRate, cfg.KeyWindow, cfg.HangFor)
	// Output: 127.0.0.1:8081 7 0.1 24h0m0s 1m0s
}
