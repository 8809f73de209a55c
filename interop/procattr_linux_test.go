package interop

import "syscall"

// dieWithParent makes the kernel kill the server if the test process dies
// (a panic, or go test's -timeout), so that no server outlives its test.
func dieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
