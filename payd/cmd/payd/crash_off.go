//go:build !chaos

package main

import "flag"

// crashConfig is empty without the chaos tag: payd serve has no
// --failpoints flag, and PAYD_FAILPOINTS means nothing to it.
type crashConfig struct{}

func (*crashConfig) flags(*flag.FlagSet) {}

func (*crashConfig) arm() (crashHooks, error) { return crashHooks{}, nil }
