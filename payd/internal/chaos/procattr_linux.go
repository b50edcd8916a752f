package chaos

import "syscall"

// procAttr puts each child in a process group of its own, so a Ctrl-C at
// the terminal reaches the harness only (which then stops its children in
// order), and has the kernel kill a child whose harness died.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
