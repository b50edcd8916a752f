package simulator

import "time"

// pendingCall is a request deferred to a late execution.
type pendingCall struct {
	due chan struct{} // closed once it has executed
}

// deferCall defers exec, the rest of the request c under k, to a late
// execution c.lateAfter from now, and reports true; or, once the
// simulator is closed, does nothing and reports false. s.mu must be held.
//
// Until exec runs, k is pending: the lookups answer 404 and every other
// POST under k 409. exec runs with s.mu held, as the request would have
// on arrival. Close abandons it.
func (s *Sim) deferCall(k slot, c *call, exec func()) bool {
	if s.closed() {
		return false
	}
	p := &pendingCall{due: make(chan struct{})}
	s.pending[k] = p
	c.lost = p.due
	// Close closes done under s.mu before it waits, and s.mu is held
	// here, so this Add happens before that Wait.
	s.late.Go(func() { s.runLate(k, p, c.lateAfter, exec) })
	return true
}

func (s *Sim) runLate(k slot, p *pendingCall, after time.Duration, exec func()) {
	t := time.NewTimer(after)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.done:
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed() { // Close came first
		return
	}
	delete(s.pending, k)
	exec()
	s.stats.lateExecutions.Add(1)
	close(p.due)
}
