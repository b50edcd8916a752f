package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/idemhq/idem/payd/internal/payments"
)

func runMismatches(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("payd mismatches", flag.ContinueOnError)
	databaseURL := fs.String("database-url", "payd.db", "a SQLite file path, or a postgres:// URL")
	asJSON := fs.Bool("json", false, "print the mismatches as a JSON array")
	summary := `List the open mismatches with the provider: disagreements payd recorded and could not
settle on its own (a provider record of another amount, an event that contradicts a final
state, an outcome still unknown near the end of the provider's key window). Each needs an
operator: correct one with payd correct --mismatch <id>.`
	if err := parse(fs, summary, args, getenv, stdout, stderr); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	st, err := openStorage(ctx, *databaseURL, nil)
	if err != nil {
		return err
	}
	defer st.close()
	open, err := st.payments.OpenMismatches(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, open)
	}
	if len(open) == 0 {
		fmt.Fprintln(stdout, "no open mismatches")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tACCOUNT\tPAYMENT\tREFUND\tFOUND\tDETAIL")
	for _, m := range open {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, m.Kind, or(m.AccountID, "-"), m.PaymentID, m.RefundID, m.FoundAt.Format("2006-01-02 15:04:05"), m.Detail)
	}
	return tw.Flush()
}

func runCorrect(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("payd correct", flag.ContinueOnError)
	databaseURL := fs.String("database-url", "payd.db", "a SQLite file path, or a postgres:// URL")
	providerURL := fs.String("provider-url", "http://127.0.0.1:8081", "the provider's base URL; the default is where an embedded payd serves its simulator")
	mismatch := fs.String("mismatch", "", "the open mismatch to correct (payd mismatches lists them)")
	operator := fs.String("operator", "", "who makes the correction, for the audit log")
	reason := fs.String("reason", "", "why, for the audit log")
	maxDelay := fs.Duration("provider-max-delay", payments.DefaultMaxProviderDelay, "payd serve's: a payment or refund not final is never failed while a request under its key was sent within this, or a worker's lease is live")
	summary := `Correct an open mismatch by the provider's record, looked up again now: the payment or
refund under its key takes the provider's state, even a final one, and the ledger gets the
transaction that change means (a charge, or its reversal; a refund paid, or reversed). The
change, its ledger transaction, an audit entry with --operator and --reason, and the
mismatch's resolution commit together. A provider record of another amount, currency or
reference is refused: correct it at the provider first.`
	if err := parse(fs, summary, args, getenv, stdout, stderr); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	if *mismatch == "" || *operator == "" || *reason == "" {
		return errors.New("payd correct needs --mismatch, --operator and --reason (payd mismatches lists the open ones)")
	}
	store, prov, closeAll, err := openWithProvider(ctx, *databaseURL, *providerURL)
	if err != nil {
		return err
	}
	defer closeAll()
	c, err := store.Correct(ctx, prov, payments.CorrectParams{MismatchID: *mismatch, Actor: "operator " + *operator, Reason: *reason,
		MaxProviderDelay: *maxDelay})
	if err != nil {
		return err
	}
	if c.From == c.To {
		fmt.Fprintf(stdout, "payd correct: %s already agrees with the provider (%s); mismatch %s resolved\n", c.Subject, c.To, c.Mismatch.ID)
		return nil
	}
	posted := ""
	if c.Posted != "" {
		posted = ", posted " + c.Posted
	}
	fmt.Fprintf(stdout, "payd correct: %s %s -> %s%s; mismatch %s resolved, audited\n", c.Subject, c.From, c.To, posted, c.Mismatch.ID)
	return nil
}

// or returns s, or dflt if s is empty.
func or(s, dflt string) string {
	if s == "" {
		return dflt
	}
	return s
}
