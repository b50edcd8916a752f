package chaos

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// launcher starts processes of the payd executable.
type launcher struct {
	command []string
	env     []string
}

func newLauncher(command, extraEnv []string) *launcher {
	var env []string
	for _, kv := range os.Environ() {
		// Every setting reaches a child as a flag: a PAYD_* variable of the
		// harness's own (PAYD_DATABASE_URL for chaos) must not change it.
		if !strings.HasPrefix(kv, "PAYD_") {
			env = append(env, kv)
		}
	}
	return &launcher{command: command, env: append(env, extraEnv...)}
}

// cmd prepares payd with args; a ctx ends it, if given.
func (l *launcher) cmd(ctx context.Context, args ...string) *exec.Cmd {
	all := slices.Concat(l.command, args)
	c := exec.CommandContext(ctx, all[0], all[1:]...)
	c.Env = l.env
	c.SysProcAttr = procAttr()
	return c
}

// output runs a short-lived payd command and returns what it printed.
func (l *launcher) output(ctx context.Context, timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var out bytes.Buffer
	c := l.cmd(ctx, args...)
	c.Stdout, c.Stderr = &out, &out
	c.WaitDelay = time.Second
	err := c.Run()
	return out.String(), err
}

// child is a running process that announces on stdout when it is ready.
type child struct {
	cmd    *exec.Cmd
	ready  chan struct{} // closed when the ready line is seen
	exited chan struct{} // closed when the process has exited and its output is read
	tail   tail

	mu        sync.Mutex
	url       string
	failpoint string // the failpoint the process said it dies at
	err       error  // from Wait
}

var failpointLine = regexp.MustCompile(`^failpoint (\S+): killing process`)

// start runs args, copying its output to log, and watches stdout for
// readyRE, whose first group is the process's URL.
func (l *launcher) start(args []string, log io.Writer, readyRE *regexp.Regexp) (*child, error) {
	// The supervisor, not a context, decides when a child ends.
	c := &child{cmd: l.cmd(context.Background(), args...), ready: make(chan struct{}), exited: make(chan struct{})}
	var once sync.Once
	c.cmd.Stdout = &lineWriter{out: log, fn: func(line string) {
		if m := readyRE.FindStringSubmatch(line); m != nil {
			once.Do(func() {
				c.mu.Lock()
				c.url = m[1]
				c.mu.Unlock()
				close(c.ready)
			})
		}
	}}
	c.cmd.Stderr = &lineWriter{out: log, fn: func(line string) {
		c.tail.add(line)
		if m := failpointLine.FindStringSubmatch(line); m != nil {
			c.mu.Lock()
			c.failpoint = m[1]
			c.mu.Unlock()
		}
	}}
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", c.cmd.Path, err)
	}
	go func() {
		err := c.cmd.Wait() // returns once stdout and stderr are copied
		c.mu.Lock()
		c.err = err
		c.mu.Unlock()
		close(c.exited)
	}()
	return c, nil
}

// awaitReady waits for the ready line, the process's exit, or timeout.
func (c *child) awaitReady(timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-c.ready:
		return nil
	case <-c.exited:
		return fmt.Errorf("exited before it was ready (%v): %s", c.exitErr(), c.tail.String())
	case <-t.C:
		return fmt.Errorf("not ready after %s: %s", timeout, c.tail.String())
	}
}

func (c *child) signal(sig syscall.Signal) {
	if c.cmd.Process != nil {
		_ = c.cmd.Process.Signal(sig) // an exited process is fine
	}
}

// stop asks the process to stop (SIGTERM) and waits up to grace, then
// kills it.
func (c *child) stop(grace time.Duration) {
	c.signal(syscall.SIGCONT)
	c.signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-c.exited:
	case <-t.C:
		c.signal(syscall.SIGKILL)
		<-c.exited
	}
}

func (c *child) exitErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *child) baseURL() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.url
}

func (c *child) failpointHit() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.failpoint
}

// lineWriter copies what is written to out and calls fn with each
// complete line.
type lineWriter struct {
	mu  sync.Mutex
	out io.Writer
	fn  func(line string)
	buf []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.out != nil {
		_, _ = w.out.Write(p) // a full disk loses logs, not the run
	}
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.fn(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > 1<<20 { // a runaway line: drop it rather than grow
		w.buf = w.buf[:0]
	}
	return len(p), nil
}

// tail keeps a process's last lines of stderr, for error messages.
type tail struct {
	mu    sync.Mutex
	lines []string
}

const tailLines = 5

func (t *tail) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(line) > 500 {
		line = line[:500] + "…"
	}
	t.lines = append(t.lines, line)
	if len(t.lines) > tailLines {
		t.lines = t.lines[len(t.lines)-tailLines:]
	}
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == 0 {
		return "(no output)"
	}
	return strings.Join(t.lines, " | ")
}

// syncFile is a log file several writers share.
type syncFile struct {
	mu sync.Mutex
	f  *os.File
}

func createLog(path string) (*syncFile, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	return &syncFile{f: f}, nil
}

func (s *syncFile) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.f.Write(p)
}

func (s *syncFile) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.f.Close()
}
