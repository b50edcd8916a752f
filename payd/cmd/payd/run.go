package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
)

// commands are payd's subcommands; serve is the default.
var commands = []struct {
	name, summary string
	run           func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error
}{
	{"serve", "run the API, the workers, or both (the default command)", runServe},
	{"migrate", "apply the database schema and exit", runMigrate},
	{"accounts", "make and list merchant accounts", runAccounts},
	{"keys", "make, list and revoke an account's API keys", runKeys},
	{"verify", "check every money invariant against the database and the provider; non-zero exit on a violation", runVerify},
	{"mismatches", "list the open mismatches with the provider, which need an operator", runMismatches},
	{"correct", "correct an open mismatch by the provider's record, audited, with its ledger transaction", runCorrect},
	{"provider-sim", "run the provider simulator as its own server", runProviderSim},
	{"chaos", "prove payd: kill, pause and cut it off under retrying clients, then check the money", runChaos},
}

// run is payd's whole program: main only passes it the process's
// environment, so tests can run it in process.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	name, rest := "serve", args[1:]
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		name, rest = rest[0], rest[1:]
	}
	if name == "help" || name == "serve" && len(args) > 1 && wantsHelp(args[1:2]) {
		usage(stdout)
		fmt.Fprintln(stdout)
		if name == "help" {
			return nil
		}
	}
	for _, c := range commands {
		if c.name == name {
			return c.run(ctx, rest, getenv, stdout, stderr)
		}
	}
	usage(stderr)
	return fmt.Errorf("unknown command %q", name)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "payd: a payment processor that never double-charges and never loses a charge.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage: payd [command] [flags]")
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, c := range commands {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	tw.Flush()
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Every flag can also be set in the environment: --database-url as PAYD_DATABASE_URL.")
	fmt.Fprintln(w, "payd <command> --help lists the command's flags.")
}

// envName is the environment variable of a flag.
func envName(flagName string) string {
	return "PAYD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parse parses args into fs, then fills each flag not given on the command
// line from its environment variable. --help prints the flags, with their
// variables, and returns errHelp.
func parse(fs *flag.FlagSet, summary string, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	out := stderr
	if wantsHelp(args) {
		out = stdout
	}
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: %s [flags]\n\n%s\n\nFlags:\n", fs.Name(), summary)
		fs.VisitAll(func(f *flag.Flag) {
			def := ""
			if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "false" {
				def = " (default " + f.DefValue + ")"
			}
			fmt.Fprintf(out, "  --%s, %s\n        %s%s\n", f.Name, envName(f.Name), f.Usage, def)
		})
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || err != nil {
			return
		}
		if v := getenv(envName(f.Name)); v != "" {
			if e := f.Value.Set(v); e != nil {
				err = fmt.Errorf("%s=%q: %w", envName(f.Name), v, e)
			}
		}
	})
	return err
}

// wantsHelp reports whether args ask for help.
func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}

// errHelp ends a command that printed its help: not a failure.
var errHelp = errors.New("help printed")

// isTerminal reports whether w is a terminal, for choosing log formats.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}
