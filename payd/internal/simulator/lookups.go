package simulator

import (
	"maps"

	"github.com/idemhq/idem/payd/internal/provider"
)

// Charges returns every charge made, declined ones included, in the order
// they were made, as they stand now. Charges pending a late execution are
// not made yet.
func (s *Sim) Charges() []provider.Charge {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]provider.Charge, 0, len(s.charges))
	for _, c := range s.charges {
		out = append(out, cloneCharge(c))
	}
	return out
}

// Refunds returns every refund made, in the order they were made.
func (s *Sim) Refunds() []provider.Refund {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]provider.Refund, 0, len(s.refunds))
	for _, r := range s.refunds {
		out = append(out, cloneRefund(r))
	}
	return out
}

// chargeWithKey returns the latest charge made under key, even past the
// key window; none while the key is pending a late execution.
func (s *Sim) chargeWithKey(key string) (provider.Charge, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.chargeByKey[key]
	if c == nil || s.pending[slot{chargeKeys, key}] != nil {
		return provider.Charge{}, false
	}
	return cloneCharge(c.charge), true
}

func (s *Sim) chargeWithID(id string) (provider.Charge, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.chargeByID[id]
	if c == nil {
		return provider.Charge{}, false
	}
	return cloneCharge(c), true
}

// refundWithKey is chargeWithKey for refunds.
func (s *Sim) refundWithKey(key string) (provider.Refund, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.refundByKey[key]
	if r == nil || s.pending[slot{refundKeys, key}] != nil {
		return provider.Refund{}, false
	}
	return cloneRefund(r.refund), true
}

func cloneCharge(c *provider.Charge) provider.Charge {
	out := *c
	out.Metadata = maps.Clone(c.Metadata)
	return out
}

func cloneRefund(r *provider.Refund) provider.Refund {
	out := *r
	out.Metadata = maps.Clone(r.Metadata)
	return out
}
