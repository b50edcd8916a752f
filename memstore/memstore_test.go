package memstore_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/idemhq/idem/memstore"
	"github.com/idemhq/idem/store"
	"github.com/idemhq/idem/storetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestConformance runs the suite on the real clock, as other stores do.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(*testing.T) store.Store { return memstore.New() })
}

// TestConformanceSynctest runs the suite again on a fake clock, where every
// lease and retention boundary is exact.
func TestConformanceSynctest(t *testing.T) {
	storetest.RunSynctest(t, func(*testing.T) store.Store { return memstore.New() })
}
