package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/idemhq/idem/payd/internal/payments"
)

// The operator's commands for merchants: payd accounts makes and lists
// accounts, payd keys makes, lists and revokes their API keys. A key is
// shown once, when it is made; payd keeps only its hash.

func runAccounts(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return runSubcommand(ctx, "payd accounts", args, getenv, stdout, stderr, []subcommand{
		{"create", "make a merchant account and its first API key", accountsCreate},
		{"list", "list the accounts", accountsList},
	})
}

func runKeys(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return runSubcommand(ctx, "payd keys", args, getenv, stdout, stderr, []subcommand{
		{"create", "make another API key for an account, to roll keys without downtime", keysCreate},
		{"list", "list an account's keys, revoked ones too", keysList},
		{"revoke", "revoke a key: requests with it are refused within seconds", keysRevoke},
	})
}

// subcommand is one verb of payd accounts or payd keys: its flags are
// added to fs, then run gets the store.
type subcommand struct {
	name, summary string
	setup         func(fs *flag.FlagSet) func(ctx context.Context, store *payments.Store, stdout io.Writer) error
}

func runSubcommand(ctx context.Context, cmd string, args []string, getenv func(string) string, stdout, stderr io.Writer, subs []subcommand) error {
	if len(args) == 0 || wantsHelp(args[:1]) {
		out := stderr
		if len(args) > 0 {
			out = stdout
		}
		fmt.Fprintf(out, "Usage: %s <command> [flags]\n\n", cmd)
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		for _, s := range subs {
			fmt.Fprintf(tw, "  %s\t%s\n", s.name, s.summary)
		}
		tw.Flush()
		if len(args) == 0 {
			return fmt.Errorf("%s needs a command", cmd)
		}
		return nil
	}
	for _, s := range subs {
		if s.name != args[0] {
			continue
		}
		fs := flag.NewFlagSet(cmd+" "+s.name, flag.ContinueOnError)
		databaseURL := fs.String("database-url", "payd.db", "a SQLite file path, or a postgres:// URL")
		run := s.setup(fs)
		if err := parse(fs, s.summary+".", args[1:], getenv, stdout, stderr); err != nil {
			if errors.Is(err, errHelp) {
				return nil
			}
			return err
		}
		if fs.NArg() > 0 {
			return fmt.Errorf("%s %s takes no arguments, only flags: %q", cmd, s.name, fs.Args())
		}
		st, err := openStorage(ctx, *databaseURL, nil)
		if err != nil {
			return err
		}
		defer st.close()
		if err := st.payments.Ready(ctx); err != nil {
			return fmt.Errorf("database not ready (run payd migrate first?): %w", err)
		}
		return run(ctx, st.payments, stdout)
	}
	return fmt.Errorf("%s: unknown command %q; %s --help lists them", cmd, args[0], cmd)
}

func accountsCreate(fs *flag.FlagSet) func(context.Context, *payments.Store, io.Writer) error {
	name := fs.String("name", "", "the merchant's name, as operators see it (required)")
	return func(ctx context.Context, store *payments.Store, stdout io.Writer) error {
		if err := payments.CheckAccountName(*name); err != nil {
			return fmt.Errorf("--name: %w", err)
		}
		id := payments.NewAccountID()
		if err := store.CreateAccount(ctx, id, *name); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "account %s (%s)\n", id, *name)
		return printNewKey(ctx, store, id, stdout)
	}
}

// printNewKey makes a key for account and shows it, once.
func printNewKey(ctx context.Context, store *payments.Store, account string, stdout io.Writer) error {
	secret := payments.NewAPIKey()
	k, err := store.AddKey(ctx, account, secret)
	if errors.Is(err, payments.ErrNotFound) {
		return fmt.Errorf("no account %s: payd accounts list shows them", account)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "API key %s: %s\n", k.ID, secret)
	fmt.Fprintln(stdout, "Keep the key now: payd shows it only this once.")
	return nil
}

func accountsList(fs *flag.FlagSet) func(context.Context, *payments.Store, io.Writer) error {
	asJSON := fs.Bool("json", false, "print the accounts as a JSON array")
	return func(ctx context.Context, store *payments.Store, stdout io.Writer) error {
		accounts, err := store.Accounts(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, accounts)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tLIVE KEYS\tCREATED")
		for _, a := range accounts {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", a.ID, a.Name, a.LiveKeys, a.CreatedAt.Format(time.RFC3339))
		}
		return tw.Flush()
	}
}

func keysCreate(fs *flag.FlagSet) func(context.Context, *payments.Store, io.Writer) error {
	account := fs.String("account", "", "the account the key is for (required)")
	return func(ctx context.Context, store *payments.Store, stdout io.Writer) error {
		if *account == "" {
			return errors.New("--account is required: payd accounts list shows the accounts")
		}
		return printNewKey(ctx, store, *account, stdout)
	}
}

func keysList(fs *flag.FlagSet) func(context.Context, *payments.Store, io.Writer) error {
	account := fs.String("account", "", "the account whose keys to list (required)")
	asJSON := fs.Bool("json", false, "print the keys as a JSON array")
	return func(ctx context.Context, store *payments.Store, stdout io.Writer) error {
		if *account == "" {
			return errors.New("--account is required: payd accounts list shows the accounts")
		}
		keys, err := store.Keys(ctx, *account)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, keys)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSTARTS WITH\tCREATED\tREVOKED")
		for _, k := range keys {
			revoked := "-"
			if k.RevokedAt != nil {
				revoked = k.RevokedAt.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.ID, k.Hint, k.CreatedAt.Format(time.RFC3339), revoked)
		}
		return tw.Flush()
	}
}

func keysRevoke(fs *flag.FlagSet) func(context.Context, *payments.Store, io.Writer) error {
	account := fs.String("account", "", "the account the key belongs to (required)")
	key := fs.String("key", "", "the key's id, key_…, as payd keys list shows it (required)")
	return func(ctx context.Context, store *payments.Store, stdout io.Writer) error {
		if *account == "" || *key == "" {
			return errors.New("--account and --key are required: payd keys list --account <id> shows the keys")
		}
		err := store.RevokeKey(ctx, *account, *key)
		if errors.Is(err, payments.ErrNotFound) {
			return fmt.Errorf("account %s has no key %s: payd keys list --account %s shows its keys", *account, *key, *account)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revoked %s of %s\n", *key, *account)
		return nil
	}
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
