//go:build !chaos

package main

import (
	"context"
	"errors"
	"io"
)

// runChaos, in a production build, says how to get a build that has the
// harness: it and the failpoints it kills at are compiled in only with the
// chaos tag.
func runChaos(context.Context, []string, func(string) string, io.Writer, io.Writer) error {
	return errors.New("this payd is a production build, without the chaos harness or its failpoints; build one with: go build -tags chaos ./payd/cmd/payd (from the repository root)")
}
