package chaos

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// supervisor keeps the payd replicas running: it starts each, restarts it
// after it dies, and sends it the process faults.
type supervisor struct {
	launcher *launcher
	seed     uint64
	args     []string // payd serve's flags, the same for every replica
	fpSpec   string   // --failpoints while faults are on
	grace    time.Duration
	replicas []*replica
	logs     []*syncFile

	stopping chan struct{}
	wg       sync.WaitGroup

	mu            sync.Mutex
	draining      bool // processes started from now on get no failpoints
	failpointKill map[Kind]int
	certain       map[string]bool // failpoints a live process has armed to fire for certain
	restarts      int
	startFailures []string
	unexpected    []string
	cutStops      int             // SIGTERM stops that cut requests still in flight when the grace ran out
	readyOnce     []chan struct{} // per replica, closed when it is first ready
}

// replica is one payd process slot: one process at a time, restarted
// after it exits.
type replica struct {
	idx int

	mu      sync.Mutex
	cur     *child
	up      bool // cur said it was ready and has not exited
	paused  bool // cur was sent SIGSTOP and not yet SIGCONT
	killed  bool // the harness sent cur SIGKILL
	recycle bool // the harness asked cur to stop, to start it again at once
}

var readyLine = regexp.MustCompile(`payd is ready on (http://\S+)`)

// newSupervisor prepares n replicas of payd serve with args; with a
// failpoint spec, each process gets it and a seed of its own.
func newSupervisor(l *launcher, seed uint64, n int, args []string, fpSpec, logDir string, grace time.Duration) (*supervisor, error) {
	s := &supervisor{
		launcher:      l,
		seed:          seed,
		args:          args,
		fpSpec:        fpSpec,
		grace:         grace,
		stopping:      make(chan struct{}),
		failpointKill: map[Kind]int{},
		certain:       map[string]bool{},
	}
	for i := range n {
		f, err := createLog(filepath.Join(logDir, fmt.Sprintf("replica-%d.log", i)))
		if err != nil {
			s.closeLogs()
			return nil, err
		}
		s.logs = append(s.logs, f)
		s.replicas = append(s.replicas, &replica{idx: i})
		s.readyOnce = append(s.readyOnce, make(chan struct{}))
	}
	return s, nil
}

// start starts every replica and waits until each has been ready once.
func (s *supervisor) start(timeout time.Duration) error {
	for _, r := range s.replicas {
		s.wg.Add(1)
		go s.loop(r)
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for i, ready := range s.readyOnce {
		select {
		case <-ready:
		case <-deadline.C:
			s.mu.Lock()
			why := strings.Join(s.startFailures, "\n  ")
			s.mu.Unlock()
			return fmt.Errorf("payd replica %d did not start within %s (its log: replica-%d.log):\n  %s", i, timeout, i, why)
		}
	}
	return nil
}

// loop runs replica r's processes until stop.
func (s *supervisor) loop(r *replica) {
	defer s.wg.Done()
	for n := 0; ; n++ {
		select {
		case <-s.stopping:
			return
		default:
		}
		args, certain := s.argsFor(r.idx, n)
		fmt.Fprintf(s.logs[r.idx], "\n=== chaos: replica %d, process %d: %s\n", r.idx, n, strings.Join(args, " "))
		c, err := s.launcher.start(args, s.logs[r.idx], readyLine)
		if err != nil {
			s.disarm(certain)
			s.startFailed(r.idx, err)
			if !s.sleep(time.Second) {
				return
			}
			continue
		}
		r.mu.Lock()
		r.cur, r.killed, r.recycle, r.paused = c, false, false, false
		r.mu.Unlock()
		select {
		case <-s.stopping:
			// stop may have looked for r.cur before it was set.
			c.stop(s.grace + 5*time.Second)
		default:
		}

		ready := c.awaitReady(30 * time.Second)
		if ready == nil {
			r.mu.Lock()
			r.up = true
			r.mu.Unlock()
			s.mu.Lock()
			select {
			case <-s.readyOnce[r.idx]:
			default:
				close(s.readyOnce[r.idx])
			}
			s.mu.Unlock()
		} else {
			c.signal(syscall.SIGKILL) // not ready in time: start again
		}
		<-c.exited

		r.mu.Lock()
		killed, recycle := r.killed, r.recycle
		r.cur, r.up, r.paused = nil, false, false
		r.mu.Unlock()
		stopping := false
		select {
		case <-s.stopping:
			stopping = true
		default:
		}
		point := c.failpointHit()
		s.mu.Lock()
		delete(s.certain, certain) // with the kill counted below, in one step
		switch {
		case point != "":
			s.failpointKill[failpointKind(point)]++
		case killed:
		case recycle, stopping:
			// A ready payd stops cleanly on SIGTERM and exits 0, or exits
			// 1 saying it cut requests still in flight when the harness's
			// short grace ran out (the clients retry them, as after a
			// kill); any other status means it failed while shutting down.
			code := exitCode(c.exitErr())
			if ready == nil && code == 1 && strings.Contains(c.tail.String(), cutInFlight) {
				s.cutStops++
				break
			}
			if ready == nil && code > 0 {
				s.unexpected = append(s.unexpected, fmt.Sprintf("replica %d, process %d (pid %d) exited with status %d after SIGTERM; its last lines: %s",
					r.idx, n, c.cmd.Process.Pid, code, c.tail.String()))
			}
		case ready != nil:
			s.startFailures = append(s.startFailures, fmt.Sprintf("replica %d, process %d: %v", r.idx, n, ready))
		default:
			s.unexpected = append(s.unexpected, fmt.Sprintf("replica %d, process %d (pid %d) exited on its own (%v); its last lines: %s",
				r.idx, n, c.cmd.Process.Pid, c.exitErr(), c.tail.String()))
		}
		if !stopping {
			s.restarts++
		}
		s.mu.Unlock()
		if stopping {
			return
		}
		delay := time.Duration(0)
		if !recycle {
			delay = s.restartDelay(r.idx, n)
		}
		if !s.sleep(delay) {
			return
		}
	}
}

// argsFor is the command line of replica i's process n: a seed of its own
// for its failpoints, derived from the run's. Until every failpoint has
// killed a process once, a new process arms with certainty the first point
// that has not fired and that no live process arms already; certain names
// it, and the caller disarms it once the process is gone. So every
// failpoint kill happens in a short run too, where a point late in a
// charge, such as after-response, is otherwise often pre-empted by the
// earlier ones. Other processes get the run's spec.
func (s *supervisor) argsFor(i, n int) (args []string, certain string) {
	args = append([]string{"serve"}, s.args...)
	args = append(args, "--seed", strconv.FormatUint(derive(s.seed, "failpoints", i, n)|1, 10))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fpSpec == "" || s.draining {
		return args, ""
	}
	for _, part := range strings.Split(s.fpSpec, ",") {
		point, _, _ := strings.Cut(part, "=")
		if s.failpointKill[failpointKind(point)] == 0 && !s.certain[point] {
			s.certain[point] = true
			return append(args, "--failpoints", point+"=1"), point
		}
	}
	return append(args, "--failpoints", s.fpSpec), ""
}

// disarm forgets that a process, now gone, armed point for certain.
func (s *supervisor) disarm(point string) {
	if point == "" {
		return
	}
	s.mu.Lock()
	delete(s.certain, point)
	s.mu.Unlock()
}

// restartDelay is how long replica i waits after its process n died: a
// seeded 100–600ms, as a process manager would take.
func (s *supervisor) restartDelay(i, n int) time.Duration {
	return between(stream(s.seed, "restart", i, n), 100*time.Millisecond, 600*time.Millisecond)
}

func (s *supervisor) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.stopping:
		return false
	}
}

func (s *supervisor) startFailed(i int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.startFailures = append(s.startFailures, fmt.Sprintf("replica %d: %v", i, err))
}

// kill sends replica i SIGKILL, if it is up.
func (s *supervisor) kill(i int) bool {
	r := s.replicas[i]
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.up || r.killed || r.recycle {
		return false
	}
	r.killed = true
	r.cur.signal(syscall.SIGKILL)
	return true
}

// pause sends replica i SIGSTOP, if it is up and running, and returns the
// process it paused (nil if none).
func (s *supervisor) pause(i int) *child {
	r := s.replicas[i]
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.up || r.paused || r.killed || r.recycle {
		return nil
	}
	r.paused = true
	r.cur.signal(syscall.SIGSTOP)
	return r.cur
}

// resume sends replica i SIGCONT, if it is paused, and if c is not nil only
// when c is the paused process: a pause ends only the pause it made.
func (s *supervisor) resume(i int, c *child) {
	r := s.replicas[i]
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.paused && r.cur != nil && (c == nil || c == r.cur) {
		r.cur.signal(syscall.SIGCONT)
		r.paused = false
	}
}

// recycle stops every replica (SIGCONT, then SIGTERM) and starts it again
// at once without failpoints: the drain's clean slate.
func (s *supervisor) recycle() {
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
	for _, r := range s.replicas {
		r.mu.Lock()
		if r.cur != nil && !r.killed {
			r.recycle = true
			r.paused = false
			r.cur.signal(syscall.SIGCONT)
			r.cur.signal(syscall.SIGTERM)
		}
		r.mu.Unlock()
	}
}

// upCount is how many replicas are up (paused ones included).
func (s *supervisor) upCount() int {
	n := 0
	for _, r := range s.replicas {
		r.mu.Lock()
		if r.up {
			n++
		}
		r.mu.Unlock()
	}
	return n
}

// pick returns the URL of an up replica, starting from a random one: the
// clients' load balancer. A paused replica is up: it accepts connections
// and answers nothing, as a stalled server does.
func (s *supervisor) pick(rng *rand.Rand) (string, bool) {
	n := len(s.replicas)
	first := rng.IntN(n)
	for k := range n {
		r := s.replicas[(first+k)%n]
		r.mu.Lock()
		up, cur := r.up, r.cur
		r.mu.Unlock()
		if up {
			return cur.baseURL(), true
		}
	}
	return "", false
}

// stop stops every replica (SIGTERM, then SIGKILL after the grace) and
// waits for their loops to end.
func (s *supervisor) stop() {
	close(s.stopping)
	var wg sync.WaitGroup
	for _, r := range s.replicas {
		r.mu.Lock()
		c := r.cur
		r.mu.Unlock()
		if c != nil {
			wg.Go(func() { c.stop(s.grace + 5*time.Second) })
		}
	}
	wg.Wait()
	s.wg.Wait()
	s.closeLogs()
}

func (s *supervisor) closeLogs() {
	for _, f := range s.logs {
		f.Close()
	}
}

// cutInFlight is what payd logs when a stop's grace ran out with
// requests still in flight, which it then cuts and exits 1.
const cutInFlight = "payd: stopping the API cut requests still in flight"

// processStats is what happened to the processes.
type processStats struct {
	failpointKills map[Kind]int
	restarts       int
	cutStops       int
	startFailures  []string
	unexpected     []string
}

func (s *supervisor) stats() processStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	fk := map[Kind]int{}
	for k, v := range s.failpointKill {
		fk[k] = v
	}
	return processStats{
		failpointKills: fk,
		restarts:       s.restarts,
		cutStops:       s.cutStops,
		startFailures:  append([]string(nil), s.startFailures...),
		unexpected:     append([]string(nil), s.unexpected...),
	}
}

func failpointKind(point string) Kind {
	for _, i := range kindInfos {
		if i.failpoint == point {
			return i.kind
		}
	}
	return Kind("kill-" + point)
}

// exitCode is the status a process exited with: 0 for success, -1 when a
// signal ended it.
func exitCode(err error) int {
	if exit, ok := errors.AsType[*exec.ExitError](err); ok {
		return exit.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}
