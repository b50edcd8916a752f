package chaos

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// progress prints the run's status line: at most once a second, over
// itself, on a terminal; a line every 10 seconds otherwise.
type progress struct {
	w   io.Writer
	tty bool

	mu    sync.Mutex
	last  time.Time
	width int // of the line on screen, on a terminal
}

func (p *progress) update(line string) {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	every := 10 * time.Second
	if p.tty {
		every = time.Second
	}
	if time.Since(p.last) < every {
		return
	}
	p.last = time.Now()
	if !p.tty {
		fmt.Fprintln(p.w, line)
		return
	}
	pad := max(0, p.width-len(line))
	fmt.Fprintf(p.w, "\r%s%s", line, strings.Repeat(" ", pad))
	p.width = len(line)
}

// say prints a milestone on a line of its own.
func (p *progress) say(format string, args ...any) {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
	fmt.Fprintf(p.w, format+"\n", args...)
}

// done ends the status line.
func (p *progress) done() {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
}

func (p *progress) clear() {
	if p.tty && p.width > 0 {
		fmt.Fprintf(p.w, "\r%s\r", strings.Repeat(" ", p.width))
		p.width = 0
	}
}

// clock formats d as m:ss.
func clock(d time.Duration) string {
	d = d.Round(time.Second)
	return fmt.Sprintf("%d:%02d", int(d.Minutes()), int(d.Seconds())%60)
}
