package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/idemhq/idem/payd/internal/payments"
	"github.com/idemhq/idem/payd/internal/provider"
)

// errViolated ends payd verify when an invariant does not hold.
var errViolated = errors.New("invariants violated; see the report above")

func runVerify(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("payd verify", flag.ContinueOnError)
	databaseURL := fs.String("database-url", "payd.db", "a SQLite file path, or a postgres:// URL")
	providerURL := fs.String("provider-url", "http://127.0.0.1:8081", "the provider's base URL; the default is where an embedded payd serves its simulator")
	stuckAfter := fs.Duration("stuck-after", payments.DefaultLease+30*time.Second, "how long past due a payment or refund may wait for a worker: the lease plus the sweep interval")
	summary := `Check payd's invariants against a live database and the provider, print a report, and
exit non-zero if any is violated: postings sum to zero per journal transaction and overall;
every balance equals the sum of its postings; refunded ≤ captured per charge; the provider's
charges and refunds match the succeeded ones 1:1; nothing is left undone past --stuck-after.
Work in flight shows as a mismatch with the provider: verify a quiet system.`
	if err := parse(fs, summary, args, getenv, stdout, stderr); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	store, prov, closeAll, err := openWithProvider(ctx, *databaseURL, *providerURL)
	if err != nil {
		return err
	}
	defer closeAll()
	report, err := store.Verify(ctx, prov, *stuckAfter)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "payd verify: %s database, provider %s\n\n", store.Dialect(), *providerURL)
	report.Print(stdout)
	if !report.OK() {
		return errViolated
	}
	return nil
}

// openWithProvider opens payd's database, checks that it answers, and
// connects to the provider: what an operator command that compares the
// two needs. closeAll releases both.
func openWithProvider(ctx context.Context, databaseURL, providerURL string) (*payments.Store, *provider.Client, func(), error) {
	st, err := openStorage(ctx, databaseURL, nil)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := st.payments.Ready(ctx); err != nil {
		st.close()
		return nil, nil, nil, fmt.Errorf("database not ready: %w", err)
	}
	prov, err := provider.NewClient(providerURL, nil)
	if err != nil {
		st.close()
		return nil, nil, nil, err
	}
	return st.payments, prov, func() { prov.CloseIdleConnections(); st.close() }, nil
}
