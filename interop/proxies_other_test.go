//go:build !linux

package interop

import "syscall"

const nobody = 65534

// unprivileged runs the process as the test's own user outside Linux.
func unprivileged() *syscall.SysProcAttr { return dieWithParent() }
