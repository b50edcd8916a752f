// Package integration holds the tests that cross idem's modules: the
// engine and idemhttp on real stores, storms across stores, and the fault
// tests that put a proxy between a store and its server. It is a module of
// its own so that none of the library modules requires what these tests
// need.
package integration
