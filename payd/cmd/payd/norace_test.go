//go:build !race && chaos

package main

const raceEnabled = false
