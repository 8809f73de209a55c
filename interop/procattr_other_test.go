//go:build !linux

package interop

import "syscall"

// dieWithParent has no portable equivalent outside Linux: a server may
// outlive a test process that is killed.
func dieWithParent() *syscall.SysProcAttr { return nil }
