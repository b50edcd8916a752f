package idem

import (
	"context"
	"crypto/sha256"
	"encoding/hex"

	"github.com/idemhq/idem/store"
)

// Lease is what fn learns about the claim it runs under (LeaseFrom).
type Lease struct {
	// StoreKey names the key's record in the store: the namespace and a
	// hash of the caller's key, never the caller's key itself. Every holder
	// of the key sees the same one.
	StoreKey string
	// Fence is this holder's fence, strictly greater than every earlier
	// holder's of the key for as long as the store keeps a record of it (a
	// key reused after its record expired starts again from 1). Fence
	// writes with it: a row written with "WHERE fence <= $fence" cannot be
	// overwritten by a holder that lost its lease.
	Fence int64
}

// ProviderKey returns the idempotency key to send downstream, to a payment
// provider say, for the caller's key: 32 characters of [0-9a-f] derived
// from StoreKey, so it fits every provider's length and alphabet, does not
// carry the caller's key (though, as an unsalted hash, it confirms a
// guessed one), and is the same for every holder, retry and takeover of
// the key, which is what lets the provider de-duplicate (TestProviderKey).
// Two services that share a provider account must use distinct
// namespaces, or their keys will collide there.
func (l Lease) ProviderKey() string {
	sum := sha256.Sum256([]byte(l.StoreKey))
	return hex.EncodeToString(sum[:16])
}

type leaseKey struct{}

// LeaseFrom returns the lease under which fn runs; ok is false outside fn.
func LeaseFrom(ctx context.Context) (l Lease, ok bool) {
	sl, ok := ctx.Value(leaseKey{}).(store.Lease)
	return Lease{StoreKey: sl.Key, Fence: sl.Fence}, ok
}
