//go:build race && chaos

package main

// raceEnabled: the race detector slows payd's processes several times over.
const raceEnabled = true
