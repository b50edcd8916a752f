package simulator

// BreakStateFile closes the state file under s, so that every later write
// to it fails, as on a disk gone bad.
func BreakStateFile(s *Sim) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state.f.Close()
}
